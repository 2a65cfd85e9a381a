#!/bin/sh
# Alertmanager's entrypoint under docker-compose: writes $SLACK_WEBHOOK_URL to the
# file that alertmanager.yml names in slack_api_url_file (Alertmanager does not
# expand environment variables in its config), then execs Alertmanager with the
# arguments given, e.g.
#   entrypoint.sh --config.file=/etc/alertmanager/alertmanager.yml --storage.path=/alertmanager
# SLACK_WEBHOOK_URL_FILE overrides where the URL is written (keep it in step with
# slack_api_url_file). POSIX sh: the prom/alertmanager image has only busybox.
set -eu

url_file="${SLACK_WEBHOOK_URL_FILE:-/etc/alertmanager/slack_webhook_url}"

if [ -z "${SLACK_WEBHOOK_URL:-}" ]; then
  echo "entrypoint: SLACK_WEBHOOK_URL is not set; alerts cannot reach Slack" >&2
  exit 64
fi
case "$SLACK_WEBHOOK_URL" in
  http://* | https://*) ;;
  *)
    echo "entrypoint: SLACK_WEBHOOK_URL must be an http(s) URL" >&2
    exit 64
    ;;
esac

# Readable by this user only; no trailing newline (Alertmanager trims it anyway).
umask 077
printf '%s' "$SLACK_WEBHOOK_URL" >"$url_file"

exec alertmanager "$@"
