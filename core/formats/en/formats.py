# Django's rendering of datetimes, dates and times in English (settings.FORMAT_MODULE_PATH):
# the console's one time format (core.formats.format_moment writes the same in Python).
DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s T"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i:s"
