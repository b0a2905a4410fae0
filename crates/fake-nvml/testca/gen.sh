#!/bin/sh
# Regenerates the TEST certificate authority of the fake libnvidia-ml.so.1.
# Never trusted outside tests: only test images pin root.pem.
set -eu
cd "$(dirname "$0")"
FWID=$(printf 'ztinit fake-nvml FWID' | openssl dgst -sha384 -r | cut -c1-96)
openssl ecparam -name secp384r1 -genkey -noout -out root.key
openssl ecparam -name secp384r1 -genkey -noout -out ica.key
openssl ecparam -name secp384r1 -genkey -noout -out leaf.key
cat > ext.cnf <<CNF
[root]
basicConstraints=critical,CA:TRUE
keyUsage=critical,keyCertSign,cRLSign
subjectKeyIdentifier=hash
[ica]
basicConstraints=critical,CA:TRUE
keyUsage=critical,keyCertSign,cRLSign
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
[leaf]
keyUsage=critical,digitalSignature
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
2.23.133.5.4.1=DER:303D0609608648016503040202 0430${FWID}
CNF
sed -i 's/0609608648016503040202 0430/06096086480165030402020430/' ext.cnf
openssl req -new -x509 -key root.key -sha384 -days 36500 -subj "/CN=ztinit TEST Device Identity CA/O=ztinit test" -extensions root -config ext.cnf -out root.pem \
  -set_serial 1 2>/dev/null || openssl req -new -x509 -key root.key -sha384 -days 36500 -subj "/CN=ztinit TEST Device Identity CA/O=ztinit test" -extensions root -config ext.cnf -out root.pem
openssl req -new -key ica.key -subj "/CN=ztinit TEST GH100 Provisioner ICA/O=ztinit test" -out ica.csr -config ext.cnf
openssl x509 -req -in ica.csr -CA root.pem -CAkey root.key -set_serial 2 -sha384 -days 36000 -extfile ext.cnf -extensions ica -out ica.pem
openssl req -new -key leaf.key -subj "/CN=GH100 A01 GSP FMC LF/O=ztinit test" -out leaf.csr -config ext.cnf
openssl x509 -req -in leaf.csr -CA ica.pem -CAkey ica.key -set_serial 3 -sha384 -days 35000 -extfile ext.cnf -extensions leaf -out leaf.pem
cat leaf.pem ica.pem root.pem > chain.pem
# The fake signs with the raw leaf scalar; the FWID goes into its reports.
openssl ec -in leaf.key -text -noout 2>/dev/null | sed -n '/priv:/,/pub:/p' | grep -v 'priv:\|pub:' | tr -d ' :\n' > leaf.scalar.hex
printf '%s' "$FWID" > fwid.hex
rm -f ica.csr leaf.csr ext.cnf root.key ica.key leaf.key
