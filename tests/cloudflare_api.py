"""A local stand-in for the part of Cloudflare's v4 REST API the R2 setup uses, which records
every request it is sent.

The real API cannot run here. The tests point the real `wrangler` CLI at this server
(`CLOUDFLARE_API_BASE_URL`) to record what the real client sends for each printed setup step,
then point `bucket-relay integrations connect-r2` at it and compare. It keeps just enough state
to answer as the API does: queues with their settings and consumers, worker scripts with their
modules, bindings and secrets, R2 event-notification rules, and messages published to a queue.
Every answer is in the v4 envelope (`{"success": true, "errors": [], "messages": [],
"result": …}`); shapes follow Cloudflare's API reference (developers.cloudflare.com/api:
Queues, Workers Scripts, Workers Subdomain, R2 Event Notifications).

`fail(method, path_pattern, code, message)` makes the next matching request fail with that
Cloudflare error (HTTP 400 unless given), to test a run that stops half-way.
"""

import email.parser
import email.policy
import json
import re
import threading
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

PREFIX = "/client/v4"
SUBDOMAIN = "relay-customer"


def now():
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ApiError(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def shape(value):
    """A JSON value's shape: objects keep their keys, leaves become their type's name."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [shape(v) for v in value[:1]]
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if value is None:
        return "null"
    return "string"


class CloudflareApi:
    def __init__(self, account):
        self.account = account
        self.lock = threading.Lock()
        self.requests = []
        self.queues = {}  # queue id -> queue
        self.scripts = {}  # script name -> {"metadata", "modules", "secrets", "subdomain"}
        self.rules = {}  # (bucket, queue id) -> [rule]
        self.messages = {}  # queue id -> [message body]
        self.failures = []
        self.published = threading.Condition(self.lock)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.server.server_port}{PREFIX}"

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def fail(self, method, pattern, code, message, status=400):
        with self.lock:
            self.failures.append((method, re.compile(pattern), status, code, message))

    def queue_named(self, name):
        return next((q for q in self.queues.values() if q["queue_name"] == name), None)

    def clear(self):
        with self.lock:
            self.requests.clear()

    # --- the HTTP side ------------------------------------------------------------------------

    def _handler(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _serve(self):
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, body = api.handle(self.command, self.path, dict(self.headers.items()), raw)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        return Handler

    def handle(self, method, target, headers, raw):
        url = urlsplit(target)
        path = unquote(url.path)
        query = {k: v[0] if len(v) == 1 else v for k, v in parse_qs(url.query).items()}
        content_type = headers.get("Content-Type") or headers.get("content-type") or ""
        record = {"method": method, "path": path, "query": query, "content_type": content_type.split(";")[0]}
        body = None
        if content_type.startswith("multipart/form-data"):
            parts = self._multipart(content_type, raw)
            record["parts"] = [{"name": p["name"], "filename": p["filename"], "content_type": p["content_type"]}
                               for p in parts]
            body = {"parts": parts}
            metadata = next((p for p in parts if p["name"] == "metadata"), None)
            if metadata:
                record["metadata"] = json.loads(metadata["bytes"])
        elif raw:
            try:
                body = json.loads(raw)
                record["body"] = body
            except ValueError:
                record["text"] = raw.decode("utf-8", "replace")
        record["authorization"] = headers.get("Authorization") or headers.get("authorization")
        with self.lock:
            self.requests.append(record)
            for i, (m, pattern, status, code, message) in enumerate(self.failures):
                if m == method and pattern.search(path):
                    del self.failures[i]
                    return status, envelope(None, errors=[{"code": code, "message": message}])
        if not path.startswith(PREFIX):
            return 404, envelope(None, errors=[{"code": 7000, "message": "No route for that URI"}])
        try:
            with self.lock:
                status, result, info = self.route(method, path[len(PREFIX):], query, body)
            record["status"] = status
            return status, envelope(result, info=info)
        except ApiError as e:
            record["status"] = e.status
            return e.status, envelope(None, errors=[{"code": e.code, "message": e.message}])

    @staticmethod
    def _multipart(content_type, raw):
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw)
        parts = []
        for part in message.iter_parts():
            disposition = part.get("Content-Disposition", "")
            name = re.search(r'name="([^"]*)"', disposition)
            filename = re.search(r'filename="([^"]*)"', disposition)
            parts.append({
                "name": name.group(1) if name else None,
                "filename": filename.group(1) if filename else None,
                "content_type": part.get_content_type(),
                "bytes": part.get_payload(decode=True) or b"",
            })
        return parts

    # --- the API ------------------------------------------------------------------------------

    def route(self, method, path, query, body):
        account = f"/accounts/{self.account}"
        if not path.startswith(account + "/") and path not in ("/user", "/user/tokens/verify", "/memberships"):
            raise ApiError(403, 9109, "Unauthorized to access requested resource")
        rest = path[len(account):]
        routes = [
            ("GET", r"/queues", self.list_queues),
            ("POST", r"/queues", self.create_queue),
            ("GET", r"/queues/(?P<q>[0-9a-f]+)", self.get_queue),
            ("PATCH", r"/queues/(?P<q>[0-9a-f]+)", self.patch_queue),
            ("PUT", r"/queues/(?P<q>[0-9a-f]+)", self.put_queue),
            ("DELETE", r"/queues/(?P<q>[0-9a-f]+)", self.delete_queue),
            ("GET", r"/queues/(?P<q>[0-9a-f]+)/consumers", self.list_consumers),
            ("POST", r"/queues/(?P<q>[0-9a-f]+)/consumers", self.create_consumer),
            ("PUT", r"/queues/(?P<q>[0-9a-f]+)/consumers/(?P<c>[0-9a-f]+)", self.put_consumer),
            ("DELETE", r"/queues/(?P<q>[0-9a-f]+)/consumers/(?P<c>[0-9a-f]+)", self.delete_consumer),
            ("POST", r"/queues/(?P<q>[0-9a-f]+)/messages", self.publish),
            ("GET", r"/workers/subdomain", self.account_subdomain),
            ("GET", r"/workers/scripts/(?P<s>[\w-]+)", self.get_script),
            ("PUT", r"/workers/scripts/(?P<s>[\w-]+)", self.put_script),
            ("DELETE", r"/workers/scripts/(?P<s>[\w-]+)", self.delete_script),
            ("GET", r"/workers/scripts/(?P<s>[\w-]+)/settings", self.script_settings),
            ("GET", r"/workers/scripts/(?P<s>[\w-]+)/secrets", self.list_secrets),
            ("PUT", r"/workers/scripts/(?P<s>[\w-]+)/secrets", self.put_secret),
            ("GET", r"/workers/scripts/(?P<s>[\w-]+)/subdomain", self.script_subdomain),
            ("POST", r"/workers/scripts/(?P<s>[\w-]+)/subdomain", self.enable_subdomain),
            ("GET", r"/workers/services/(?P<s>[\w-]+)", self.get_service),
            ("GET", r"/workers/services/(?P<s>[\w-]+)/environments/production", self.get_service_env),
            ("GET", r"/workers/scripts/(?P<s>[\w-]+)/deployments", self.deployments),
            ("GET", r"/workers/scripts/(?P<s>[\w-]+)/schedules", self.schedules),
            ("GET", r"/event_notifications/r2/(?P<b>[\w.-]+)/configuration", self.notification_config),
            ("PUT", r"/event_notifications/r2/(?P<b>[\w.-]+)/configuration/queues/(?P<q>[0-9a-f]+)",
             self.put_rules),
            ("DELETE", r"/event_notifications/r2/(?P<b>[\w.-]+)/configuration/queues/(?P<q>[0-9a-f]+)",
             self.delete_rules),
            ("GET", r"/r2/buckets/(?P<b>[\w.-]+)", self.get_bucket),
        ]
        for m, pattern, handler in routes:
            match = re.fullmatch(pattern, rest)
            if m == method and match:
                out = handler(query=query, body=body, **match.groupdict())
                return out if isinstance(out, tuple) else (200, out, None)
        raise ApiError(404, 7003, f"No route for {method} {path}")

    # queues

    def _queue(self, q):
        if q not in self.queues:
            raise ApiError(404, 11000, "Queue does not exist")
        return self.queues[q]

    def list_queues(self, query, body):
        queues = list(self.queues.values())
        if "name" in query:
            queues = [x for x in queues if x["queue_name"] == query["name"]]
        return 200, queues, {"page": 1, "per_page": 100, "count": len(queues), "total_count": len(queues),
                             "total_pages": 1}

    def create_queue(self, query, body):
        name = body.get("queue_name", "")
        if not re.fullmatch(r"[a-z0-9-]{1,63}", name):
            raise ApiError(400, 11003, "queue_name is invalid")
        if self.queue_named(name):
            raise ApiError(409, 11009, "A queue with this name already exists")
        settings = {"delivery_delay": 0, "delivery_paused": False, "message_retention_period": 345600}
        settings.update(body.get("settings") or {})
        check_retention(settings["message_retention_period"])
        queue = {"queue_id": uuid.uuid4().hex, "queue_name": name, "created_on": now(), "modified_on": now(),
                 "producers": [], "producers_total_count": 0, "consumers": [], "consumers_total_count": 0,
                 "settings": settings}
        self.queues[queue["queue_id"]] = queue
        self.messages[queue["queue_id"]] = []
        return queue

    def get_queue(self, q, query, body):
        return self._queue(q)

    def patch_queue(self, q, query, body):
        queue = self._queue(q)
        settings = dict(queue["settings"], **(body.get("settings") or {}))
        check_retention(settings["message_retention_period"])
        queue["settings"] = settings
        queue["modified_on"] = now()
        return queue

    def put_queue(self, q, query, body):
        queue = self._queue(q)
        settings = {"delivery_delay": 0, "delivery_paused": False, "message_retention_period": 345600}
        settings.update(body.get("settings") or {})
        check_retention(settings["message_retention_period"])
        queue["settings"] = settings
        return queue

    def delete_queue(self, q, query, body):
        queue = self._queue(q)
        if queue["consumers"]:
            raise ApiError(400, 11005, "Queue has consumers; delete them first")
        del self.queues[q]
        return None

    def list_consumers(self, q, query, body):
        return self._queue(q)["consumers"]

    def create_consumer(self, q, query, body):
        queue = self._queue(q)
        script = body.get("script_name") or body.get("script")
        if body.get("type", "worker") == "worker":
            if script not in self.scripts:
                raise ApiError(400, 11004, f"Worker {script} does not exist")
            if any(c.get("type") == "worker" for c in queue["consumers"]):
                raise ApiError(409, 11004, "Queue already has a worker consumer")
        dlq = body.get("dead_letter_queue")
        if dlq and not self.queue_named(dlq):
            raise ApiError(400, 11003, f"Dead letter queue {dlq} does not exist")
        consumer = {"consumer_id": uuid.uuid4().hex, "queue_name": queue["queue_name"], "script": script,
                    "type": body.get("type", "worker"), "settings": body.get("settings") or {},
                    "created_on": now()}
        if dlq:
            consumer["dead_letter_queue"] = dlq
        queue["consumers"].append(consumer)
        queue["consumers_total_count"] = len(queue["consumers"])
        return consumer

    def put_consumer(self, q, c, query, body):
        queue = self._queue(q)
        for consumer in queue["consumers"]:
            if consumer["consumer_id"] == c:
                consumer["settings"] = body.get("settings") or {}
                if body.get("dead_letter_queue"):
                    consumer["dead_letter_queue"] = body["dead_letter_queue"]
                else:
                    consumer.pop("dead_letter_queue", None)
                return consumer
        raise ApiError(404, 11000, "Consumer does not exist")

    def delete_consumer(self, q, c, query, body):
        queue = self._queue(q)
        before = len(queue["consumers"])
        queue["consumers"] = [x for x in queue["consumers"] if x["consumer_id"] != c]
        if len(queue["consumers"]) == before:
            raise ApiError(404, 11000, "Consumer does not exist")
        queue["consumers_total_count"] = len(queue["consumers"])
        return None

    def publish(self, q, query, body):
        self._queue(q)
        self.messages[q].append(body)
        self.published.notify_all()
        return None

    # workers

    def _script(self, s):
        if s not in self.scripts:
            raise ApiError(404, 10007, "This Worker does not exist on your account.")
        return self.scripts[s]

    def account_subdomain(self, query, body):
        return {"subdomain": SUBDOMAIN}

    def get_script(self, s, query, body):
        self._script(s)
        return {"id": s}

    def get_service(self, s, query, body):
        script = self._script(s)
        return {"id": s, "default_environment": {"environment": "production", "script": {
            "id": s, "last_deployed_from": "wrangler", "tag": script["tag"]}}}

    def get_service_env(self, s, query, body):
        return self.get_service(s, query, body)

    def deployments(self, s, query, body):
        script = self._script(s)
        version = {"version_id": script["tag"], "percentage": 100}
        return {"deployments": [{"id": script["tag"], "source": "api", "strategy": "percentage",
                                 "created_on": now(), "versions": [version]}]}

    def schedules(self, s, query, body):
        self._script(s)
        return {"schedules": []}

    def put_script(self, s, query, body):
        parts = (body or {}).get("parts") or []
        metadata = next((p for p in parts if p["name"] == "metadata"), None)
        if metadata is None:
            raise ApiError(400, 10021, "Uploaded script has no metadata part")
        meta = json.loads(metadata["bytes"])
        main = meta.get("main_module")
        modules = {p["name"]: p for p in parts if p["name"] != "metadata"}
        if main not in modules:
            raise ApiError(400, 10021, f"No such module: {main}")
        previous = self.scripts.get(s, {})
        secrets = dict(previous.get("secrets", {}))
        for binding in meta.get("bindings", []):
            if binding.get("type") == "secret_text":
                secrets[binding["name"]] = binding.get("text")
        keep = set(meta.get("keep_bindings") or [])
        if "secret_text" not in keep and not any(b.get("type") == "inherit" for b in meta.get("bindings", [])):
            secrets = {b["name"]: b.get("text") for b in meta.get("bindings", []) if b.get("type") == "secret_text"}
        for binding in meta.get("bindings", []):
            if binding.get("type") == "queue" and not self.queue_named(binding.get("queue_name", "")):
                raise ApiError(400, 10021, f"Queue {binding.get('queue_name')} does not exist")
        tag = uuid.uuid4().hex
        self.scripts[s] = {"metadata": meta, "modules": modules, "secrets": secrets,
                           "subdomain": previous.get("subdomain", False), "tag": tag}
        return {"id": s, "etag": tag, "tag": tag, "handlers": ["fetch", "queue"], "modified_on": now(),
                "created_on": now(), "usage_model": "standard", "compatibility_date": meta.get("compatibility_date"),
                "startup_time_ms": 5}

    def delete_script(self, s, query, body):
        self._script(s)
        for queue in self.queues.values():
            if any(c.get("script") == s for c in queue["consumers"]) and query.get("force") != "true":
                raise ApiError(400, 10064, "This Worker is a queue consumer; remove the consumer first")
        del self.scripts[s]
        return None

    def script_settings(self, s, query, body):
        script = self._script(s)
        bindings = [b for b in script["metadata"].get("bindings", []) if b.get("type") != "secret_text"]
        bindings += [{"type": "secret_text", "name": n} for n in script["secrets"]]
        return {"bindings": bindings, "compatibility_date": script["metadata"].get("compatibility_date"),
                "compatibility_flags": [], "logpush": False, "observability": script["metadata"].get("observability"),
                "tags": [], "tail_consumers": [], "usage_model": "standard"}

    def list_secrets(self, s, query, body):
        return [{"name": n, "type": "secret_text"} for n in self._script(s)["secrets"]]

    def put_secret(self, s, query, body):
        script = self._script(s)
        if body.get("type") != "secret_text" or not body.get("name"):
            raise ApiError(400, 10021, "A secret needs a name, a text and type secret_text")
        script["secrets"][body["name"]] = body.get("text")
        return {"name": body["name"], "type": "secret_text"}

    def script_subdomain(self, s, query, body):
        return {"enabled": self._script(s)["subdomain"], "previews_enabled": False}

    def enable_subdomain(self, s, query, body):
        self._script(s)["subdomain"] = bool(body.get("enabled"))
        return {"enabled": self.scripts[s]["subdomain"], "previews_enabled": bool(body.get("previews_enabled"))}

    # R2 event notifications

    def get_bucket(self, b, query, body):
        return {"name": b, "creation_date": now(), "location": "ENAM", "storage_class": "Standard"}

    def notification_config(self, b, query, body):
        queues = []
        for (bucket, q), rules in self.rules.items():
            if bucket == b and rules:
                queues.append({"queueId": q, "queueName": self.queues[q]["queue_name"] if q in self.queues else q,
                               "rules": rules})
        return {"bucketName": b, "queues": queues}

    def put_rules(self, b, q, query, body):
        self._queue(q)
        existing = self.rules.setdefault((b, q), [])
        for rule in body.get("rules") or []:
            for other in existing:
                if overlaps(rule, other):
                    raise ApiError(409, 10026, "An event notification rule overlaps an existing one")
            existing.append({"ruleId": uuid.uuid4().hex, "createdAt": now(), **rule})
        return None

    def delete_rules(self, b, q, query, body):
        ids = (body or {}).get("ruleIds")
        rules = self.rules.get((b, q), [])
        self.rules[(b, q)] = [r for r in rules if ids and r["ruleId"] not in ids]
        return None


def check_retention(seconds):
    # Queues' limits page: 60 s to 14 days (Free plan: 24 hours, not enforced here).
    if not 60 <= int(seconds) <= 1209600:
        raise ApiError(400, 11003, "message_retention_period must be between 60 and 1209600")


def overlaps(a, b):
    """Two rules overlap when one's prefix starts the other's and likewise their suffixes, for a
    shared action (Cloudflare refuses such a second rule)."""
    shared = set(a.get("actions") or []) & set(b.get("actions") or [])
    pa, pb = a.get("prefix") or "", b.get("prefix") or ""
    sa, sb = a.get("suffix") or "", b.get("suffix") or ""
    return bool(shared) and (pa.startswith(pb) or pb.startswith(pa)) and (sa.endswith(sb) or sb.endswith(sa))


def envelope(result, errors=(), info=None):
    body = {"success": not errors, "errors": list(errors), "messages": [], "result": result}
    if info:
        body["result_info"] = info
    return body
