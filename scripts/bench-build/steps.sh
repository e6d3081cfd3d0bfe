#!/bin/bash
# The benchmark's shell steps, run as root by both kiln (embedded in an
# ExecuteBash step) and Packer (a shell provisioner with sudo).
set -euo pipefail
mkdir -p /srv/www
echo "Hello from the benchmark" > /srv/www/index.html
cat > /etc/systemd/system/web.service <<'UNIT'
[Unit]
Description=Benchmark web server
After=network.target

[Service]
DynamicUser=yes
ExecStart=/usr/bin/python3 -m http.server 8080 --bind 0.0.0.0 --directory /srv/www
Restart=on-failure

[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload && systemctl enable --now web.service
deadline=$((SECONDS + 30))
until curl -fsS --max-time 5 http://127.0.0.1:8080/; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "web.service did not answer within 30 s" >&2
        exit 1
    fi
    sleep 1
done
