"""The pods/eviction subresource with PodDisruptionBudgets, as kube-apiserver's eviction REST (1.19 .. 1.2x).

evict(ctl, ns, name, body, api_version) -> (201, Status Success) or raises ApiError:
  400 body of an unregistered version (policy/v1 on a 1.19-like server, see error-eviction-policy-v1-body.json),
      or the name in the body differs from the URL
  404 pod not found
  429 TooManyRequests "Cannot evict pod as it would violate the pod's disruption budget." with
      details.causes[{reason: DisruptionBudget, message: "The disruption budget <pdb> needs <desired> healthy pods
      and has <current> currently"}] (error-429-eviction-pdb.json); also while the PDB is not yet observed
  403 "pdb disruptions allowed is negative"; 500 more than one PDB
Pending/Succeeded/Failed or already-deleting pods ignore PDBs (1.19 canIgnorePDB).  On success the PDB status gets
disruptionsAllowed-1 and disruptedPods[pod]=now, then the pod is deleted with the body's deleteOptions.
"""

import time

from .errors import ApiError

SUCCESS = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
DENY_MESSAGE = "Cannot evict pod as it would violate the pod's disruption budget."
RES_PODS = "pods"
RES_PDB = "policy/poddisruptionbudgets"


def _bad_version(version):
    return ApiError(400, "BadRequest",
                    'Eviction in version "v1" cannot be handled as a Eviction: no kind "Eviction" is registered for '
                    'version "%s" in scheme "k8s.io/kubernetes/pkg/api/legacyscheme/scheme.go:30"' % version)


def _pods_not_found(name):
    return ApiError(404, "NotFound", 'pods "%s" not found' % name, {"name": name, "kind": "pods"})


def _delete_options(body):
    opts = (body or {}).get("deleteOptions") or {}
    kw = {}
    if opts.get("gracePeriodSeconds") is not None:
        kw["grace_seconds"] = int(opts["gracePeriodSeconds"])
    pre = opts.get("preconditions") or {}
    if pre:
        kw["preconditions"] = {k: v for k, v in pre.items() if v}
    if opts.get("propagationPolicy"):
        kw["propagation"] = opts["propagationPolicy"]
    return kw


def evict(ctl, ns, name, body, api_version=None):
    from .controllers import meta, pod_is_ready, selector_empty, selector_matches, now_rfc3339
    body = body or {}
    version = body.get("apiVersion") or api_version or "policy/v1beta1"
    if body.get("kind") not in (None, "Eviction") or version not in ("policy/v1beta1", "policy/v1"):
        raise _bad_version(version)
    if version == "policy/v1" and not ctl.eviction_v1():
        raise _bad_version(version)
    body_name = (body.get("metadata") or {}).get("name")
    if body_name and body_name != name:
        raise ApiError(400, "BadRequest", "name in URL does not match name in Eviction object")
    store = ctl.store
    pod = store.get(RES_PODS, ns, name)
    if pod is None:
        raise _pods_not_found(name)
    del_kw = _delete_options(body)
    phase = (pod.get("status") or {}).get("phase") or "Pending"
    if meta(pod).get("deletionTimestamp") or phase in ("Pending", "Succeeded", "Failed"):
        _delete(store, ctl, ns, name, del_kw)
        return 201, dict(SUCCESS)
    labels = meta(pod).get("labels") or {}
    pdbs = []
    for p in store.list(RES_PDB, ns):
        sel = (p.get("spec") or {}).get("selector")
        if selector_empty(sel) or not selector_matches(sel, labels):
            continue
        pdbs.append(p)
    if not pdbs:
        _delete(store, ctl, ns, name, del_kw)
        return 201, dict(SUCCESS)
    if len(pdbs) > 1:
        raise ApiError(500, "InternalError", "Internal error occurred: This pod has more than one "
                       "PodDisruptionBudget, which the eviction subresource does not support.",
                       {"causes": [{"message": "This pod has more than one PodDisruptionBudget, which the eviction "
                                               "subresource does not support."}]})
    pdb_name = meta(pdbs[0])["name"]
    for _ in range(5):
        pdb = store.get(RES_PDB, ns, pdb_name)
        if pdb is None:
            _delete(store, ctl, ns, name, del_kw)
            return 201, dict(SUCCESS)
        st = pdb.get("status") or {}
        if st.get("observedGeneration", 0) < meta(pdb).get("generation", 1):
            # not yet processed: compute like the disruption controller would, synchronously
            st = ctl.compute_pdb_status(pdb)
        allowed = st.get("disruptionsAllowed", 0)
        if allowed < 0:
            raise ApiError(403, "Forbidden", "pdb disruptions allowed is negative")
        if allowed == 0:
            raise ApiError(429, "TooManyRequests", DENY_MESSAGE, {"causes": [{
                "reason": "DisruptionBudget",
                "message": "The disruption budget %s needs %d healthy pods and has %d currently" % (
                    pdb_name, st.get("desiredHealthy", 0), st.get("currentHealthy", 0))}]})
        rv = meta(pdb).get("resourceVersion")
        now = now_rfc3339()
        new_status = dict(st)

        def fn(obj, rv=rv, new_status=new_status):
            if meta(obj).get("resourceVersion") != rv:
                raise _Retry()
            s = dict(new_status)
            s["disruptionsAllowed"] = s.get("disruptionsAllowed", 0) - 1
            dp = dict(s.get("disruptedPods") or {})
            dp[name] = now
            s["disruptedPods"] = dp
            if s["disruptionsAllowed"] <= 0 and s.get("conditions"):
                s["conditions"] = [dict(c, status="False", reason="InsufficientPods", lastTransitionTime=now)
                                   if c.get("type") == "DisruptionAllowed" and c.get("status") != "False" else c
                                   for c in s["conditions"]]
            obj["status"] = s
            return True
        try:
            store.mutate(RES_PDB, ns, pdb_name, fn, subresource="status")
        except _Retry:
            time.sleep(0.01)
            continue
        if ctl is not None and ctl._started:
            ctl.queues["disruption"].add((ns, pdb_name))
        _delete(store, ctl, ns, name, del_kw)
        return 201, dict(SUCCESS)
    raise ApiError(429, "TooManyRequests", DENY_MESSAGE, {"causes": [{
        "reason": "DisruptionBudget", "message": "The disruption budget %s is still being processed by the server."
        % pdb_name}]})


class _Retry(Exception):
    pass


def _delete(store, ctl, ns, name, kw):
    try:
        if ctl is not None:
            ctl._delete(RES_PODS, ns, name, **kw)
        else:
            store.delete(RES_PODS, ns, name, **kw)
    except ApiError as e:
        if e.code == 404:
            raise _pods_not_found(name)
        raise
