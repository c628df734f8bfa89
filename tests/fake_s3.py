"""A storage endpoint that answers listings the way a broken or hostile one would, for the
listing-fault tests: the real AWS SDK in the receiver parses each answer, so what is tested is
what the receiver does with what the SDK hands it.

Each bucket name picks a behaviour (see `ANSWERS`); STS `AssumeRole` is answered too, so the S3
path (assume the read role, then `ListObjectVersions`) runs against it as against AWS. Requests
are counted per bucket, and the server stops with the test.
"""

import datetime as dt
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

NS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'


def now():
    return dt.datetime.now(tz=dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def contents(keys):
    return "".join(f"<Contents><Key>{k}</Key><LastModified>{now()}</LastModified><ETag>\"e-{k}\"</ETag>"
                   f"<Size>3</Size><StorageClass>STANDARD</StorageClass></Contents>" for k in keys)


def objects_page(keys, truncated=None, token=None, key_count=None):
    """A ListObjectsV2 answer; `None` leaves the element out."""
    parts = [f"<ListBucketResult {NS}><Name>b</Name><Prefix></Prefix>",
             f"<KeyCount>{len(keys) if key_count is None else key_count}</KeyCount><MaxKeys>1000</MaxKeys>"]
    if truncated is not None:
        parts.append(f"<IsTruncated>{str(truncated).lower()}</IsTruncated>")
    if token is not None:
        parts.append(f"<NextContinuationToken>{token}</NextContinuationToken>")
    parts.append(contents(keys) + "</ListBucketResult>")
    return '<?xml version="1.0" encoding="UTF-8"?>' + "".join(parts)


def versions_page(keys, truncated, next_key=None):
    versions = "".join(f"<Version><Key>{k}</Key><VersionId>v-{k}</VersionId><IsLatest>true</IsLatest>"
                       f"<LastModified>{now()}</LastModified><ETag>\"e-{k}\"</ETag><Size>3</Size>"
                       f"<StorageClass>STANDARD</StorageClass></Version>" for k in keys)
    marker = f"<NextKeyMarker>{next_key}</NextKeyMarker>" if next_key else ""
    return (f'<?xml version="1.0" encoding="UTF-8"?><ListVersionsResult {NS}><Name>b</Name><Prefix></Prefix>'
            f"<KeyMarker></KeyMarker><VersionIdMarker></VersionIdMarker><MaxKeys>1000</MaxKeys>"
            f"<IsTruncated>{str(truncated).lower()}</IsTruncated>{marker}{versions}</ListVersionsResult>")


def same_token(n, query):
    # Truncated, with the same continuation token every time.
    return objects_page(["a.pdf"], truncated=True, token="T")


def new_token_same_keys(n, query):
    # A new token on every page, and the same keys on every page: forever.
    return objects_page(["a.pdf", "b.pdf"], truncated=True, token=f"T{n}")


def cut_short(n, query):
    # A page cut off in the middle of an element: no IsTruncated, fewer keys than KeyCount says.
    return objects_page(["a.pdf"], key_count=3)[:-len("</ListBucketResult>")] + "<Contents><Key>b.p"


def truncated_without_token(n, query):
    return objects_page(["a.pdf"], truncated=True)


def healthy(n, query):
    return objects_page(["ok.pdf"], truncated=False)


def slow_after_the_first_tick(n, query):
    # The first listing is one whole page; from the second on, a new page every second, with new
    # keys and a new token, for ever.
    if n == 1:
        return objects_page(["first.pdf"], truncated=False)
    import time
    time.sleep(1)
    return objects_page([f"k{n:08}.pdf"], truncated=True, token=f"T{n}")


def versions_without_marker(n, query):
    # ListObjectVersions truncated, naming no NextKeyMarker.
    return versions_page(["a.pdf"], truncated=True)


ANSWERS = {
    "same-token": same_token,
    "new-token-same-keys": new_token_same_keys,
    "cut-short": cut_short,
    "truncated-no-token": truncated_without_token,
    "healthy": healthy,
    "versions-no-marker": versions_without_marker,
    "slow-after-first": slow_after_the_first_tick,
}

ASSUME_ROLE = """<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult>
<Credentials><AccessKeyId>ASIAFAKEFAKEFAKE</AccessKeyId><SecretAccessKey>fake</SecretAccessKey>
<SessionToken>fake-session</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration></Credentials>
<AssumedRoleUser><AssumedRoleId>AROAFAKE:bucket-relay-lister</AssumedRoleId>
<Arn>arn:aws:sts::123456789012:assumed-role/read/bucket-relay-lister</Arn></AssumedRoleUser>
</AssumeRoleResult><ResponseMetadata><RequestId>fake</RequestId></ResponseMetadata></AssumeRoleResponse>"""


class FakeS3:
    def __init__(self):
        self.calls = {}
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, body, status=200):
                data = body.encode()
                self.send_response(status)
                self.send_header("content-type", "application/xml")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                self.rfile.read(int(self.headers.get("content-length", 0)))
                self.reply(ASSUME_ROLE)

            def do_GET(self):
                url = urlparse(self.path)
                bucket = url.path.strip("/").split("/")[0]
                with fake.lock:
                    n = fake.calls[bucket] = fake.calls.get(bucket, 0) + 1
                answer = ANSWERS.get(bucket)
                if answer is None:
                    return self.reply("<Error><Code>NoSuchBucket</Code></Error>", 404)
                self.reply(answer(n, parse_qs(url.query)))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
