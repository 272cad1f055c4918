#!/usr/bin/env python3
"""A webhook receiver for trying Murima locally: prints each delivery it gets and whether
its signature holds, and answers 204.

    python3 scripts/webhook-receiver.py PORT SECRET

The signature header is `Murima-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
"<t>.<body>" with the webhook's secret>`; a real receiver also refuses an old `t`.
"""
import hashlib
import hmac
import http.server
import sys
import time

PORT, SECRET = int(sys.argv[1]), sys.argv[2].encode()


def signed(header, body):
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    if "t" not in parts or "v1" not in parts:
        return False
    expected = hmac.new(SECRET, parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    fresh = abs(time.time() - int(parts["t"])) < 300
    return fresh and hmac.compare_digest(expected, parts["v1"])


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        ok = signed(self.headers.get("Murima-Signature", ""), body)
        print(self.headers.get("Murima-Event-Type"), "signature ok" if ok else "BAD SIGNATURE",
              body[:120].decode(errors="replace"), flush=True)
        self.send_response(204 if ok else 401)
        self.end_headers()

    def log_message(self, *args):
        pass


http.server.HTTPServer(("127.0.0.1", PORT), Receiver).serve_forever()
