"""A counting, breakable HTTP proxy in front of the AWS emulator (moto).

The receiver's AWS SDK talks to this proxy (AWS_ENDPOINT_URL), which forwards every request to
moto unchanged. It counts calls per operation (from `X-Amz-Target`, e.g. `AmazonSQS.SendMessageBatch`),
can answer one service's calls with 503 as an outage would, and can be stopped and restarted on
the same port, so tests can take "AWS" away without wiping the emulator's state. It also injects
what moto never produces by itself: `SendMessageBatch` answers in which some entries failed, and
DynamoDB throttling (`ProvisionedThroughputExceededException`). For the bucket listings (S3 and
STS, which carry no `X-Amz-Target`), it records which access key signed each call and what
`AssumeRole` asked for, and can refuse a listing or a role as AWS would (`AccessDenied`).

DynamoDB calls are forwarded one at a time: moto's server is threaded and checks a condition
expression and writes the item without a lock, so two concurrent conditional `PutItem`s can both
succeed there, which real DynamoDB never allows. Serialising them restores that atomicity; the
receiver's own requests stay concurrent.
"""

import collections
import http.client
import http.server
import json
import threading

SERVICES = {"AmazonSQS": "sqs", "DynamoDB_20120810": "dynamodb", "secretsmanager": "secretsmanager",
            "TrentService": "kms"}


def operation_of(headers, path="", body=b"", method="POST"):
    target = headers.get("X-Amz-Target", "")
    if method == "HEAD":
        return "s3", "HeadObject"
    if not target:
        if b"Action=AssumeRole" in body:
            return "sts", "AssumeRole"
        if "?versions" in path or "&versions" in path:
            return "s3", "ListObjectVersions"
        if "list-type=2" in path:
            return "s3", "ListObjectsV2"
    prefix, _, operation = target.partition(".")
    return SERVICES.get(prefix, prefix or "other"), operation or "unknown"


# Batch calls that IAM authorises as their single-message action (SQS's API reference, each
# batch action's "permissions" note).
IAM_ACTION = {"SendMessageBatch": "SendMessage", "DeleteMessageBatch": "DeleteMessage",
              "ChangeMessageVisibilityBatch": "ChangeMessageVisibility"}


def actions_of(service, operation, body):
    """(IAM action, resource name) for a call to DynamoDB, SQS, Secrets Manager or KMS (JSON
    bodies): a batch names each of its tables."""
    if service not in ("dynamodb", "sqs", "secretsmanager", "kms"):
        return set()
    try:
        request = json.loads(body or b"{}")
    except ValueError:
        return set()
    names = set()
    for field in ("TableName", "QueueUrl", "SecretId", "KeyId"):
        if isinstance(request.get(field), str):
            names.add(request[field])
    names.update(request.get("RequestItems") or {})
    for item in request.get("TransactItems") or []:
        names.update(action["TableName"] for action in item.values() if "TableName" in action)
    action = f"{service}:{IAM_ACTION.get(operation, operation)}"
    return {(action, name) for name in names or {""}}


def access_key_of(headers):
    """The access key id a SigV4 `Authorization` header names (`Credential=<id>/<date>/…`)."""
    authorization = headers.get("Authorization", "")
    _, _, credential = authorization.partition("Credential=")
    return credential.split("/", 1)[0] or None


S3_ACCESS_DENIED = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
                    b'<Message>Access Denied</Message><RequestId>injected</RequestId></Error>')
STS_ACCESS_DENIED = (b'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error>'
                     b'<Type>Sender</Type><Code>AccessDenied</Code><Message>User is not authorized to '
                     b'perform: sts:AssumeRole</Message></Error><RequestId>injected</RequestId></ErrorResponse>')


class CountingProxy:
    def __init__(self, upstream_port, port=0):
        self.upstream_port = upstream_port
        self.counts = collections.Counter()
        self.failing = set()
        self.lock = threading.Lock()
        self.dynamodb_lock = threading.Lock()
        self.port = port
        self.server = None
        self.entry_failures = 0
        self.sender_fault = False
        self.throttled = None  # (operation, calls to let through first, calls to throttle)
        self.seen = []  # (service, operation, access key id, body) of S3 and STS calls
        self.denied = set()  # operations answered AccessDenied
        self.meter = None  # a DynamoMeter (dynamodb_meter.py): bills each DynamoDB call
        self.made = set()  # (IAM action, resource name) of each call to the stack's own resources
        self.in_flight = collections.Counter()  # operation -> calls being answered now
        self.most_in_flight = collections.Counter()  # operation -> the most at once since a reset

    # --- control ---------------------------------------------------------------------------
    def start(self):
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                proxy.forward(self)

            do_GET = do_POST
            do_PUT = do_POST
            do_DELETE = do_POST
            do_HEAD = do_POST

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        """Takes the proxy down: the receiver's connections are refused until start()."""
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def fail(self, service):
        self.failing.add(service)

    def heal(self):
        self.failing.clear()
        self.denied.clear()
        with self.lock:
            self.entry_failures = 0
            self.sender_fault = False
            self.throttled = None

    def fail_entries(self, calls, sender_fault=False):
        """The next `calls` SendMessageBatch calls fail every other entry: as SQS may under load
        (`SenderFault` false: the sender may retry them), or as it does for an entry it refuses
        as it is (`SenderFault` true, e.g. `InvalidParameterValue`)."""
        with self.lock:
            self.entry_failures = calls
            self.sender_fault = sender_fault

    def throttle(self, operation, after, calls):
        """After `after` more DynamoDB `operation` calls go through, throttles the next `calls`."""
        with self.lock:
            self.throttled = (operation, after, calls)

    def deny(self, operation):
        """Answers `operation` (`ListObjectVersions`, `ListObjectsV2`, `HeadObject`, `AssumeRole`) with 403
        AccessDenied, as AWS does for a role without the permission or a trust that does not fit;
        a DynamoDB operation (`DescribeTable`) with its 400 `AccessDeniedException`."""
        self.denied.add(operation)

    def calls(self, service, operation=None):
        """The recorded S3 / STS calls: (access key id, body) of each."""
        with self.lock:
            return [(key, body) for (s, o, key, body) in self.seen if s == service and operation in (None, o)]

    def reset_counts(self):
        with self.lock:
            self.counts.clear()
            self.made.clear()
            self.most_in_flight.clear()

    def actions(self):
        """The IAM actions the calls since the last reset needed, each with the resource it named
        (a table, a queue URL, a secret or key id): what a role policy must allow."""
        with self.lock:
            return set(self.made)

    def count(self, service, operation=None):
        with self.lock:
            return sum(n for (s, o), n in self.counts.items() if s == service and operation in (None, o))

    # --- forwarding --------------------------------------------------------------------------
    def forward(self, handler):
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        service, operation = operation_of(handler.headers, handler.path, body, handler.command)
        head = handler.command == "HEAD"
        with self.lock:
            self.counts[(service, operation)] += 1
            self.made.update(actions_of(service, operation, body))
            if service in ("s3", "sts"):
                self.seen.append((service, operation, access_key_of(handler.headers), body.decode(errors="replace")))
        if operation in self.denied and service == "dynamodb":
            self.answer(handler, 400, {"__type": "com.amazon.coral.service#AccessDeniedException",
                                       "message": f"User is not authorized to perform: dynamodb:{operation}"})
            return
        if operation in self.denied:
            # A HEAD answer has no body: S3 says 403 and nothing more.
            payload = b"" if head else STS_ACCESS_DENIED if service == "sts" else S3_ACCESS_DENIED
            handler.send_response(403)
            handler.send_header("Content-Type", "application/xml")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
            return
        if service in self.failing:
            payload = b'{"__type":"ServiceUnavailable","message":"injected outage"}'
            handler.send_response(503)
            handler.send_header("Content-Type", "application/x-amz-json-1.0")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
            return
        if self.take_throttle(service, operation):
            self.answer(handler, 400, {"__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                                       "message": "injected throttling"})
            return
        failed_entries = []
        if operation == "SendMessageBatch" and self.take_entry_failure():
            request = json.loads(body)
            failed_entries = request["Entries"][1::2]
            request["Entries"] = request["Entries"][0::2]
            body = json.dumps(request).encode()
        with self.lock:
            self.in_flight[operation] += 1
            self.most_in_flight[operation] = max(self.most_in_flight[operation], self.in_flight[operation])
        try:
            self.pass_on(handler, service, operation, body, head, failed_entries)
        finally:
            with self.lock:
                self.in_flight[operation] -= 1

    def pass_on(self, handler, service, operation, body, head, failed_entries):
        headers = {k: v for k, v in handler.headers.items()
                   if k.lower() not in ("host", "connection", "content-length")}
        headers["Host"] = f"127.0.0.1:{self.upstream_port}"
        headers["Content-Length"] = str(len(body))
        if service == "dynamodb":
            def call(target, payload):
                sent = {**headers, "X-Amz-Target": target, "Content-Length": str(len(payload))}
                return self.upstream(handler.command, handler.path, payload, sent)
            with self.dynamodb_lock:
                if self.meter is not None:
                    response, data = self.meter.measure(operation, body, call)
                else:
                    response, data = self.upstream(handler.command, handler.path, body, headers)
        else:
            response, data = self.upstream(handler.command, handler.path, body, headers)
        if failed_entries:
            answer = json.loads(data)
            code = "InvalidParameterValue" if self.sender_fault else "InternalError"
            answer.setdefault("Failed", []).extend(
                {"Id": entry["Id"], "SenderFault": self.sender_fault, "Code": code,
                 "Message": "injected partial failure"} for entry in failed_entries)
            data = json.dumps(answer).encode()
        handler.send_response(response.status)
        for key, value in response.getheaders():
            # A HEAD answer's Content-Length is the object's size: it passes through as is.
            if key.lower() not in ("transfer-encoding", "connection") and (head or key.lower() != "content-length"):
                handler.send_header(key, value)
        if not head:
            handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if not head:
            handler.wfile.write(data)

    def upstream(self, method, path, body, headers):
        connection = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response, response.read()
        finally:
            connection.close()


    # --- injected faults -----------------------------------------------------------------------
    def take_entry_failure(self):
        with self.lock:
            if self.entry_failures <= 0:
                return False
            self.entry_failures -= 1
            return True

    def take_throttle(self, service, operation):
        with self.lock:
            if service != "dynamodb" or not self.throttled or self.throttled[0] != operation:
                return False
            name, after, calls = self.throttled
            if after > 0:
                self.throttled = (name, after - 1, calls)
                return False
            if calls <= 0:
                return False
            self.throttled = (name, 0, calls - 1)
            return True

    @staticmethod
    def answer(handler, status, document):
        payload = json.dumps(document).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/x-amz-json-1.0")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)
