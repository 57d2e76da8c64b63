#!/bin/sh
# The one image runs the web tier or a worker cluster; see the Dockerfile.
set -e
case "$1" in
  web)
    shift
    exec gunicorn core.wsgi:application --bind "0.0.0.0:${PORT}" \
      --workers "${WEB_CONCURRENCY:-2}" --access-logfile - "$@" ;;
  cluster)
    shift
    exec python manage.py qcluster "$@" ;;
  migrate)
    python manage.py migrate --noinput
    exec python manage.py createcachetable ;;
  *)
    exec "$@" ;;
esac
