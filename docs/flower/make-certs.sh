#!/usr/bin/env bash
# A self-signed CA and a SuperLink certificate, for trying Flower with TLS (verified with flwr 1.42).
#   docs/flower/make-certs.sh DIR [HOST_IP]     (HOST_IP: the SuperLink's address, default 127.0.0.1)
# SuperLink:  --ssl-ca-certfile DIR/ca.crt --ssl-certfile DIR/server.pem --ssl-keyfile DIR/server.key
# SuperNode:  --root-certificates DIR/ca.crt        flwr config.toml:  root-certificates = "DIR/ca.crt"
# For production, use certificates from your organisation's CA instead.
set -euo pipefail
dir=${1:?usage: make-certs.sh DIR [HOST_IP]}; ip=${2:-127.0.0.1}
mkdir -p "$dir" && cd "$dir"
openssl genrsa -out ca.key 4096 2>/dev/null
openssl req -x509 -new -nodes -key ca.key -sha256 -days 365 -subj "/CN=cllora-flower-ca" -out ca.crt
openssl genrsa -out server.key 4096 2>/dev/null
openssl req -new -key server.key -subj "/CN=$ip" -out server.csr
printf 'basicConstraints = CA:FALSE\nkeyUsage = digitalSignature, keyEncipherment\nextendedKeyUsage = serverAuth\nsubjectAltName = IP:%s, IP:127.0.0.1, IP:::1, DNS:localhost\n' "$ip" > server.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.pem -days 365 \
    -sha256 -extfile server.ext 2>/dev/null
openssl verify -CAfile ca.crt server.pem
