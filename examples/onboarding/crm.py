"""A tiny stand-in "CRM" for the onboarding example: customers in memory, on loopback.

Run it::

    .venv/bin/python examples/onboarding/crm.py --port 8090

- ``POST /customers`` creates a customer from the JSON body (``name`` required, any other
  fields kept) and answers ``201 {"id": "cus_…", "name": …, …}``.  It is idempotent per
  ``Idempotency-Key`` header, as payment and CRM APIs are: a request repeating a key gets
  the customer that key created (``Idempotent-Replayed: true``), nothing is created twice.
  Blockflow's ``http`` step sends that header (the step's execution id, stable across
  retries), so a retried step never creates a second customer.
- ``GET /customers`` lists every customer; ``GET /customers/<id>`` returns one.
- ``POST /records/<kind>`` keeps any JSON body as a record of that kind (the orders example's
  reservations, invoices, shipments and notifications), idempotent per ``Idempotency-Key`` in
  the same way; ``GET /records/<kind>`` lists them.

Standard library and aiohttp only; state is lost when the process stops.
"""

from __future__ import annotations

import argparse
import json
import secrets
from typing import Any

from aiohttp import web

IDEMPOTENCY_HEADER = "Idempotency-Key"

CUSTOMERS = web.AppKey("customers", dict[str, dict[str, Any]])
BY_KEY = web.AppKey("by_key", dict[str, str])
RECORDS = web.AppKey("records", dict[str, dict[str, dict[str, Any]]])


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def create_customer(request: web.Request) -> web.Response:
    customers, by_key = request.app[CUSTOMERS], request.app[BY_KEY]
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key and key in by_key:
        return web.json_response(
            customers[by_key[key]], status=201, headers={"Idempotent-Replayed": "true"}
        )
    try:
        body = json.loads(await request.read())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return _error(400, f"the body is not valid JSON: {exc}")
    if not isinstance(body, dict):
        return _error(400, "the body must be a JSON object")
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        return _error(422, "name is required (a non-empty string)")
    customer = {**body, "id": f"cus_{secrets.token_hex(6)}", "name": name}
    customers[customer["id"]] = customer
    if key:
        by_key[key] = customer["id"]
    print(f"created customer {customer['id']} ({name})", flush=True)
    return web.json_response(customer, status=201)


async def list_customers(request: web.Request) -> web.Response:
    return web.json_response(list(request.app[CUSTOMERS].values()))


async def get_customer(request: web.Request) -> web.Response:
    customer = request.app[CUSTOMERS].get(request.match_info["id"])
    if customer is None:
        return _error(404, f"no customer {request.match_info['id']}")
    return web.json_response(customer)


async def create_record(request: web.Request) -> web.Response:
    kind, records = request.match_info["kind"], request.app[RECORDS]
    key = request.headers.get(IDEMPOTENCY_HEADER)
    replayed = records.setdefault(kind, {}).get(key) if key else None
    if replayed is not None:
        return web.json_response(replayed, status=201, headers={"Idempotent-Replayed": "true"})
    try:
        body = json.loads(await request.read() or b"null")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return _error(400, f"the body is not valid JSON: {exc}")
    record = {"id": f"{kind[:3]}_{secrets.token_hex(6)}", "body": body}
    records[kind][key or record["id"]] = record
    print(f"{kind}: {json.dumps(body)}", flush=True)
    return web.json_response(record, status=201)


async def list_records(request: web.Request) -> web.Response:
    return web.json_response(
        list(request.app[RECORDS].get(request.match_info["kind"], {}).values())
    )


def make_app() -> web.Application:
    app = web.Application()
    app[CUSTOMERS] = {}
    app[BY_KEY] = {}
    app[RECORDS] = {}
    app.router.add_post("/records/{kind}", create_record)
    app.router.add_get("/records/{kind}", list_records)
    app.router.add_post("/customers", create_customer)
    app.router.add_get("/customers", list_customers)
    app.router.add_get("/customers/{id}", get_customer)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="A tiny CRM for the Blockflow onboarding demo.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback)")
    parser.add_argument("--port", type=int, default=8090, help="port to listen on (8090)")
    args = parser.parse_args()
    web.run_app(
        make_app(),
        host=args.host,
        port=args.port,
        print=lambda _: print(f"CRM listening on http://{args.host}:{args.port}", flush=True),
    )


if __name__ == "__main__":
    main()
