# One image for both processes; the command picks:
#   docker run IMAGE web        gunicorn on :8000, configured by gunicorn.conf.py
#   docker run IMAGE cluster    manage.py qcluster (add --name ingestion|reaction to split)
#   docker run IMAGE migrate    apply migrations and sync schedules (run once per release)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PORT=8000
WORKDIR /app

COPY requirements/base.txt requirements/base.txt
RUN pip install --no-cache-dir -r requirements/base.txt

COPY . .
RUN SECRET_KEY=build-only python manage.py collectstatic --noinput \
    && useradd --system --home /app platform && chown -R platform /app/var
USER platform

EXPOSE 8000
ENTRYPOINT ["/app/docker-entrypoint.sh"]
CMD ["web"]
