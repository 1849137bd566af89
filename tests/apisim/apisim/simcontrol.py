"""/_sim test controls (admin only): counters, faults, watch cut/expire, restart, dump, PKI rebuild, the bridge
(old service-account keys trusted again), tokens, nodes."""

import json
import threading
import time

from . import errors
from .pki import legacy_token_claims


def _body(handler):
    if not handler.body.strip():
        return {}
    try:
        d = json.loads(handler.body.decode())
    except ValueError as e:
        raise errors.bad_request("invalid JSON: %s" % e)
    return d if isinstance(d, dict) else {}


def handle(sim, h, method, path):
    parts = [p for p in path.split("/") if p][1:]  # drop "_sim"
    route = "/".join(parts)
    h._verb = method.lower()
    h._sub = route
    if method == "GET" and route == "counters":
        return h.send_json(200, sim.counters.snapshot())
    if method == "POST" and route == "counters/reset":
        sim.counters.reset()
        return h.send_json(200, {"ok": True})
    if route == "faults":
        if method == "POST":
            b = _body(h)
            rules = b.get("rules") or []
            if b.get("seed") is not None:  # reproducible draws (faults, forced watch 410s)
                sim.faults.rng.seed(int(b["seed"]))
                sim.chaos_rng.seed(int(b["seed"]))
            sim.faults.set(rules)
            return h.send_json(200, {"ok": True, "rules": len(rules)})
        if method == "DELETE":
            sim.faults.clear()
            return h.send_json(200, {"ok": True})
        if method == "GET":
            with sim.faults.lock:
                return h.send_json(200, {"rules": list(sim.faults.rules)})
    if method == "POST" and route == "watch/cut":
        n = _body(h).get("afterEvents")
        sim.watch_cut_after = None if n is None else int(n)
        return h.send_json(200, {"ok": True, "afterEvents": sim.watch_cut_after})
    if method == "POST" and route == "watch/expire":
        b = _body(h)
        if "rate" in b:  # from now on every watch is answered 410 with this probability
            sim.watch_expire_rate = float(b["rate"] or 0)
        else:
            sim.watch_expire_next = True
        return h.send_json(200, {"ok": True, "rate": sim.watch_expire_rate})
    if method == "POST" and route == "continue/expire":
        b = _body(h)
        mode = b.get("mode")
        if mode is None and "always" in b:  # {"always": true}: a compacting etcd, every token expires
            mode = "every" if b["always"] else "off"
        if mode is None:
            sim.store.compact(sim.store.current_rv() + 1)  # every token issued so far expires
            return h.send_json(200, {"ok": True, "compactedRV": sim.store.compact_rv})
        if mode not in ("off", "next", "every"):
            raise errors.bad_request("mode: off, next or every")
        sim.continue_expire = mode  # next: the next consistent continue token -> 410; every: all of them
        return h.send_json(200, {"ok": True, "mode": mode, "always": mode == "every"})
    if method == "POST" and route == "controllers":
        b = _body(h)
        bad = sorted(k for k in b if k not in ("tokenDelay", "tokenRate"))
        if bad or sim.controllers is None:
            raise errors.bad_request("controllers: only tokenDelay, tokenRate can be set at runtime (got %s)" % bad)
        from .scenario import CONTROLLER_OPTIONS
        for k, v in b.items():
            sim.controllers.opts[CONTROLLER_OPTIONS[k]] = float(v)
        return h.send_json(200, {"ok": True})
    if method == "POST" and route == "list/page-cap":
        sim.page_cap = int(_body(h).get("max") or 0)
        return h.send_json(200, {"ok": True, "max": sim.page_cap})
    if route == "writes":
        if method == "GET":
            try:
                since = int(h.query.get("since") or 0)
            except ValueError:
                raise errors.bad_request("since: an integer")
            return h.send_json(200, {"writes": sim.writes.since(since)})
        if method == "DELETE":
            sim.writes.clear()
            return h.send_json(200, {"ok": True})
    if route == "writes/trap":
        if method == "POST":
            b = _body(h)
            sim.writes.arm(b.get("after", 1), b.get("user", ""), b.get("exclude") or ())
            return h.send_json(200, sim.writes.state())
        if method == "GET":
            return h.send_json(200, sim.writes.state())
        if method == "DELETE":
            return h.send_json(200, sim.writes.disarm())
    if method == "POST" and route == "restart":
        down = float(_body(h).get("downSeconds") or 0)
        h.send_json(200, {"ok": True})
        h.wfile.flush()
        h.close_connection = True
        if down > 0:
            sim.down_until = time.time() + down
        threading.Thread(target=sim.restart, daemon=True).start()
        return None
    if method == "GET" and route == "dump":
        return h.send_json(200, {"resourceVersion": str(sim.store.current_rv()), "objects": sim.store.dump()})
    if method == "POST" and route == "pki-rebuild":
        sim.pki.rebuild()
        return h.send_json(200, {"ok": True, "caCert": sim.pki.ca_cert_pem,
                                 "kid": sim.pki.current_sa_key.kid})
    if method == "POST" and route == "bridge":
        # {"enabled": true}: the old service-account keys are trusted again next to the current one (a second
        # --service-account-key-file), as after `kubemend keys recover`; false: the current key alone.
        on = bool(_body(h).get("enabled"))
        with sim.pki._lock:
            sim.pki.sa_keys = [sim.pki.current_sa_key] + (list(sim.pki.old_sa_keys) if on else [])
            sim.pki._verify_cache.clear()
        return h.send_json(200, {"ok": True, "kids": [k.kid for k in sim.pki.sa_keys]})
    if method == "GET" and route == "pki":
        return h.send_json(200, {"caCert": sim.pki.ca_cert_pem, "oldCaCerts": list(sim.pki.old_ca_cert_pems),
                                 "kid": sim.pki.current_sa_key.kid})
    if method == "POST" and route == "token":
        b = _body(h)
        ns, sa = b.get("namespace", "default"), b.get("serviceAccount", "default")
        key = sim.pki.current_sa_key
        if b.get("key") == "old":
            key = sim.pki.old_sa_key()
            if key is None:
                raise errors.bad_request("no old service-account key (no PKI rebuild yet)")
        sao = sim.store.get_ref("serviceaccounts", ns, sa)
        uid = b.get("uid") or (sao["metadata"]["uid"] if sao else "")
        secret = b.get("secretName") or "%s-token-sim" % sa
        token = sim.pki.sign_jwt(legacy_token_claims(ns, sa, uid, secret), key)
        return h.send_json(200, {"token": token})
    if method == "POST" and len(parts) == 3 and parts[0] == "nodes" and parts[2] in ("down", "up"):
        if parts[2] == "down":
            sim.down_nodes.add(parts[1])
        else:
            sim.down_nodes.discard(parts[1])
        return h.send_json(200, {"ok": True, "downNodes": sorted(sim.down_nodes)})
    if method == "GET" and route == "nodes":
        return h.send_json(200, {"downNodes": sorted(sim.down_nodes)})
    raise errors.generic_not_found()
