#!/usr/bin/env bash
# Regenerates the test PKI used by TLS tests (sluice_testkit::http::test_pki): a CA, a
# server certificate for 127.0.0.1 / localhost and a client certificate, all signed by the
# CA, plus an unrelated CA. Valid for 100 years; test use only, never deploy these keys.
set -euo pipefail
cd "$(dirname "$0")"
days=36500
openssl req -x509 -newkey rsa:2048 -nodes -days "$days" -subj "/CN=sluice test CA" \
  -keyout ca.key -out ca.pem 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -days "$days" -subj "/CN=another CA" \
  -keyout other-ca.key -out other-ca.pem 2>/dev/null
rm other-ca.key
leaf() { # name subject extensions
  openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$1.key" -out "$1.csr" 2>/dev/null
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days "$days" \
    -extfile <(printf '%s' "$3") -out "$1.pem" 2>/dev/null
  rm "$1.csr"
}
leaf server "/CN=localhost" "subjectAltName=IP:127.0.0.1,DNS:localhost
basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth"
leaf client "/CN=sluice test client" "basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
rm -f ca.key ca.srl
