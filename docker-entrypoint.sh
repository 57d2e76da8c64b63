#!/bin/sh
# The one image runs the web tier or a worker cluster; see the Dockerfile.
set -e
case "$1" in
  web)
    shift
    # Processes: WEB_CONCURRENCY (2); threads each: WEB_THREADS (4). See gunicorn.conf.py.
    exec gunicorn --config gunicorn.conf.py --bind "0.0.0.0:${PORT}" "$@" ;;
  cluster)
    shift
    exec python manage.py qcluster "$@" ;;
  migrate)
    exec python manage.py migrate --noinput ;;
  *)
    exec "$@" ;;
esac
