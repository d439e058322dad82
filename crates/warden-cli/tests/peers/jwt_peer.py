"""A JWT peer nobody at Warden wrote: PyJWT verifies Warden tokens from the published JWKS alone, and
forges the malicious tokens Warden must refuse.

usage: jwt_peer.py verify BASE_URL TOKEN ISSUER AUDIENCE   -> prints the claims as JSON, exit 0
       jwt_peer.py forge-none TOKEN                         -> same claims, `alg: none`, no signature
       jwt_peer.py forge-hs256 BASE_URL TOKEN               -> same claims, HS256 keyed with the public key
"""
import base64
import json
import sys
import urllib.request

import jwt


def jwks(base_url):
    with urllib.request.urlopen(base_url + "/.well-known/jwks.json") as res:
        return json.load(res)


def main():
    cmd = sys.argv[1]
    if cmd == "verify":
        base_url, token, issuer, audience = sys.argv[2:6]
        kid = jwt.get_unverified_header(token)["kid"]
        keys = [k for k in jwks(base_url)["keys"] if k["kid"] == kid]
        if not keys:
            print(f"kid {kid} not in the JWKS", file=sys.stderr)
            return 1
        key = jwt.PyJWK(keys[0])
        claims = jwt.decode(token, key=key.key, algorithms=["EdDSA"], audience=audience, issuer=issuer)
        print(json.dumps(claims))
        return 0
    if cmd == "forge-none":
        token = sys.argv[2]
        claims = jwt.decode(token, options={"verify_signature": False})
        header = jwt.get_unverified_header(token)
        print(jwt.encode(claims, None, algorithm="none", headers={"kid": header["kid"]}))
        return 0
    if cmd == "forge-hs256":
        base_url, token = sys.argv[2:4]
        claims = jwt.decode(token, options={"verify_signature": False})
        kid = jwt.get_unverified_header(token)["kid"]
        key = next(k for k in jwks(base_url)["keys"] if k["kid"] == kid)
        public = base64.urlsafe_b64decode(key["x"] + "==")
        print(jwt.encode(claims, public, algorithm="HS256", headers={"kid": kid}))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
