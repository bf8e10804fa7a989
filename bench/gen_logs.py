#!/usr/bin/env python3
"""Deterministic benchmark inputs for `gwdoctor logs`.

gen_logs.py access SIZE_MB OUT   an nginx access log (combined + upstream fields), ~3 % 5xx
gen_logs.py error  SIZE_MB OUT   a mixed nginx error log (real message shapes, many upstreams)

The same seed gives the same bytes, so runs compare like with like.
"""
import random
import sys

AGENTS = ["Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
          "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
          "curl/8.5.0", "Go-http-client/1.1", "python-requests/2.31.0"]
PATHS = ["/", "/cart", "/checkout", "/api/items", "/api/cart", "/login", "/static/app.js", "/wp-admin/admin-ajax.php",
         "/index.php", "/search", "/product/%d", "/user/%d/orders"]
UPSTREAMS = ["10.0.0.%d:8000" % i for i in range(1, 9)] + ["unix:/run/php/php8.2-fpm.sock"]
MESSAGES = [
    "connect() failed (111: Connection refused) while connecting to upstream",
    "upstream timed out (110: Connection timed out) while reading response header from upstream",
    "upstream prematurely closed connection while reading response header from upstream",
    "recv() failed (104: Connection reset by peer) while reading response header from upstream",
    "no live upstreams while connecting to upstream",
    "connect() to unix:/run/php/php8.2-fpm.sock failed (11: Resource temporarily unavailable) while connecting to upstream",
    "upstream sent too big header while reading response header from upstream",
    "upstream timed out (110: Connection timed out) while connecting to upstream",
    "open() \"/var/www/html/favicon.ico\" failed (2: No such file or directory)",
    "client intended to send too large body: 10485761 bytes",
]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def access(out, limit, rnd):
    t = 1714600000
    written = 0
    lines = []
    while written < limit:
        t += rnd.random() < 0.05
        ts = "%02d/May/2024:%02d:%02d:%02d +0000" % (2 + t // 86400 % 28, t // 3600 % 24, t // 60 % 60, t % 60)
        path = rnd.choice(PATHS)
        if "%d" in path:
            path = path % rnd.randrange(100000)
        r = rnd.random()
        status = 502 if r < 0.02 else 504 if r < 0.025 else 503 if r < 0.03 else 404 if r < 0.06 else 200
        up = rnd.choice(UPSTREAMS)
        urt = "%.3f" % (rnd.random() * (5 if status == 504 else 0.3))
        ustatus = str(status)
        if status == 200 and rnd.random() < 0.01:
            up = "%s, %s" % (rnd.choice(UPSTREAMS), up)
            ustatus = "502, 200"
            urt = "0.001, " + urt
        line = '%d.%d.%d.%d - - [%s] "GET %s HTTP/1.1" %d %d "-" "%s" upstream_addr="%s" upstream_status="%s" upstream_response_time="%s" request_time=%s\n' % (
            rnd.randrange(1, 255), rnd.randrange(256), rnd.randrange(256), rnd.randrange(1, 255), ts, path, status,
            rnd.randrange(100, 50000), rnd.choice(AGENTS), up, ustatus, urt, urt.split(", ")[-1])
        lines.append(line)
        written += len(line)
        if len(lines) >= 10000:
            out.write("".join(lines))
            lines.clear()
    out.write("".join(lines))


def error(out, limit, rnd):
    t = 1714600000
    written = 0
    lines = []
    while written < limit:
        t += rnd.random() < 0.1
        ts = "2024/05/%02d %02d:%02d:%02d" % (2 + t // 86400 % 28, t // 3600 % 24, t // 60 % 60, t % 60)
        msg = rnd.choice(MESSAGES)
        up = "unix:/run/php/php8.2-fpm.sock" if "unix:" in msg else rnd.choice(UPSTREAMS[:-1])
        scheme = "fastcgi://" if up.startswith("unix:") else "http://"
        path = rnd.choice(PATHS).replace("%d", str(rnd.randrange(100000)))
        level = "error" if "open()" not in msg else "error"
        line = '%s [%s] %d#%d: *%d %s, client: %d.%d.%d.%d, server: shop.example.com, request: "GET %s HTTP/1.1", upstream: "%s%s%s", host: "shop.example.com"\n' % (
            ts, level, 812, 812, rnd.randrange(1, 10**7), msg, rnd.randrange(1, 255), rnd.randrange(256), rnd.randrange(256),
            rnd.randrange(1, 255), path, scheme, up, ":" if up.startswith("unix:") else path)
        lines.append(line)
        written += len(line)
        if len(lines) >= 10000:
            out.write("".join(lines))
            lines.clear()
    out.write("".join(lines))


def main():
    kind, size_mb, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    rnd = random.Random(502)
    with open(path, "w") as out:
        {"access": access, "error": error}[kind](out, size_mb * 1024 * 1024, rnd)


if __name__ == "__main__":
    main()
