"""What DynamoDB would bill for each call the receiver makes: read and write units computed from
the items' sizes by the rules AWS documents, because moto's own `ConsumedCapacity` is not
(a 2 KB put reports 1 unit, a failed conditional write none).

The rules (DynamoDB developer guide, "Item sizes and formats" and "Capacity unit consumption"):
- an item's size is the sum of its attribute names' and values' sizes: a string its UTF-8 bytes,
  a number about one byte per two significant digits plus one, a boolean or null one byte, a list
  or map three bytes plus each element's size plus one byte per element;
- a write is billed per 1 KB of the larger of the item before and after it (`PutItem`,
  `UpdateItem`), of the deleted item (`DeleteItem`), each item of a `BatchWriteItem` rounded on
  its own; a conditional write whose condition fails is still billed: the existing item's size,
  or one unit when there is none;
- a read is billed per 4 KB of each item read: half a unit eventually consistent, one unit
  strongly consistent; an item that is not there costs the same as a small one.

The meter sits in the counting proxy (aws_proxy.py), which forwards DynamoDB calls one at a time,
so reading an item just before and just after a write sees exactly what that write changed. Its
own reads go to moto directly and are not counted.
"""

import collections
import json
import math

TARGET = "DynamoDB_20120810."


def value_size(value):
    (kind, body), = value.items()
    if kind == "S":
        return len(body.encode())
    if kind == "N":
        digits = body.lstrip("-").replace(".", "").strip("0") or "0"
        return math.ceil(len(digits) / 2) + 1
    if kind == "B":
        return len(body) * 3 // 4  # base64 on the wire; the raw bytes are billed
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS", "BS"):
        return sum(value_size({kind[0]: element}) for element in body)
    if kind == "L":
        return 3 + sum(value_size(element) + 1 for element in body)
    if kind == "M":
        return 3 + sum(len(name.encode()) + value_size(element) + 1 for name, element in body.items())
    raise ValueError(f"unknown attribute type {kind}")


def item_size(item):
    return sum(len(name.encode()) + value_size(value) for name, value in (item or {}).items())


def write_units(*sizes):
    return max(1, math.ceil(max(sizes) / 1024))


def read_units(size, consistent):
    return max(1, math.ceil(size / 4096)) * (1.0 if consistent else 0.5)


class DynamoMeter:
    """Write and read units per operation, as DynamoDB bills them."""

    def __init__(self):
        self.units = collections.Counter()  # (operation, "write" | "read") -> units
        self.keys = {}  # table -> its key attribute names

    def reset(self):
        self.units.clear()

    def total(self, kind):
        return sum(n for (_, k), n in self.units.items() if k == kind)

    def measure(self, operation, body, call):
        """Forwards one DynamoDB call through `call(target, body) -> (response, data)` and bills
        it; answers what `call` answered for the receiver's own request."""
        request = json.loads(body or b"{}")
        if operation in ("PutItem", "UpdateItem", "DeleteItem"):
            table = request["TableName"]
            key = self.key_of(table, request.get("Key") or request.get("Item"), call)
            before = self.get(table, key, call)
            response, data = call(TARGET + operation, body)
            after = self.get(table, key, call)
            if response.status == 200:
                units = write_units(item_size(before), item_size(after))
            else:
                failed = b"ConditionalCheckFailed" in data
                units = (write_units(item_size(before)) if before else 1) if failed else 0
            self.units[(operation, "write")] += units
            return response, data
        if operation == "BatchWriteItem":
            sizes = []
            for table, requests in request["RequestItems"].items():
                for entry in requests:
                    item = entry.get("PutRequest", {}).get("Item") or entry.get("DeleteRequest", {}).get("Key")
                    key = self.key_of(table, item, call)
                    before = self.get(table, key, call)
                    new = entry.get("PutRequest", {}).get("Item")
                    sizes.append(write_units(item_size(before), item_size(new)))
            response, data = call(TARGET + operation, body)
            if response.status == 200:
                left = sum(len(v) for v in json.loads(data).get("UnprocessedItems", {}).values())
                self.units[(operation, "write")] += sum(sizes[:len(sizes) - left])
            return response, data
        response, data = call(TARGET + operation, body)
        if response.status != 200:
            return response, data
        answer = json.loads(data)
        if operation == "GetItem":
            self.units[(operation, "read")] += read_units(item_size(answer.get("Item")),
                                                          request.get("ConsistentRead", False))
        elif operation == "BatchGetItem":
            consistent = {t: r.get("ConsistentRead", False) for t, r in request["RequestItems"].items()}
            found = answer.get("Responses", {})
            for table, asked in request["RequestItems"].items():
                sizes = [item_size(item) for item in found.get(table, [])]
                missing = len(asked["Keys"]) - len(sizes)
                self.units[(operation, "read")] += sum(read_units(size, consistent[table]) for size in sizes)
                self.units[(operation, "read")] += missing * read_units(0, consistent[table])
        elif operation in ("Query", "Scan"):
            size = sum(item_size(item) for item in answer.get("Items", []))
            self.units[(operation, "read")] += read_units(size, request.get("ConsistentRead", False))
        return response, data

    def key_of(self, table, item, call):
        if table not in self.keys:
            _, data = call(TARGET + "DescribeTable", json.dumps({"TableName": table}).encode())
            schema = json.loads(data)["Table"]["KeySchema"]
            self.keys[table] = [part["AttributeName"] for part in schema]
        return {name: item[name] for name in self.keys[table]}

    @staticmethod
    def get(table, key, call):
        response, data = call(TARGET + "GetItem", json.dumps({"TableName": table, "Key": key,
                                                             "ConsistentRead": True}).encode())
        return json.loads(data).get("Item") if response.status == 200 else None
