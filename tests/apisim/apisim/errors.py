"""API errors rendered as metav1.Status exactly like kube-apiserver (see fixtures error-*.json)."""


class ApiError(Exception):
    def __init__(self, code, reason, message, details=None, headers=None, metadata=None):
        super().__init__(message)
        self.code = int(code)
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = dict(headers or {})
        self.metadata = metadata or {}

    def status(self):
        """The metav1 Status dict, key order as the real server."""
        out = {"kind": "Status", "apiVersion": "v1", "metadata": dict(self.metadata), "status": "Failure"}
        if self.message is not None:
            out["message"] = self.message
        if self.reason:
            out["reason"] = self.reason
        if self.details is not None:
            out["details"] = self.details
        out["code"] = self.code
        return out


def _qualified(res_info):
    """'configmaps' or 'leases.coordination.k8s.io' (GroupResource.String())."""
    if res_info is None:
        return ""
    if isinstance(res_info, str):
        return res_info
    return res_info.plural + ("." + res_info.group if res_info.group else "")


def _details(res_info, name=None):
    d = {}
    if name:
        d["name"] = name
    if res_info is not None and not isinstance(res_info, str):
        if res_info.group:
            d["group"] = res_info.group
        d["kind"] = res_info.plural
    elif isinstance(res_info, str) and res_info:
        d["kind"] = res_info
    return d


def not_found(res_info, name):
    return ApiError(404, "NotFound", '%s "%s" not found' % (_qualified(res_info), name), _details(res_info, name))


def generic_not_found():
    """The 404 for an unknown path (e.g. /apis/policy/v1 on 1.19): details {}."""
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def already_exists(res_info, name):
    return ApiError(409, "AlreadyExists", '%s "%s" already exists' % (_qualified(res_info), name),
                    _details(res_info, name))


def conflict(res_info, name, reason_text="the object has been modified; please apply your changes to the latest "
                                         "version and try again"):
    return ApiError(409, "Conflict", 'Operation cannot be fulfilled on %s "%s": %s' % (
        _qualified(res_info), name, reason_text), _details(res_info, name))


def _kind_conflict(res_info, name, text):
    """409 of rest.BeforeDelete's precondition checks: NewConflict(GroupResource{Group, Resource: Kind}, ...)."""
    if res_info is None or isinstance(res_info, str):
        return conflict(res_info, name, text)
    group = res_info.group
    qualified = res_info.kind + ("." + group if group else "")
    details = {"name": name}
    if group:
        details["group"] = group
    details["kind"] = res_info.kind
    return ApiError(409, "Conflict", 'Operation cannot be fulfilled on %s "%s": %s' % (qualified, name, text),
                    details)


def precondition_uid(res_info, name, want, have):
    if getattr(res_info, "key", None) == "namespaces":  # the namespace registry checks it itself
        return conflict(res_info, name, "Precondition failed: UID in precondition: %s, UID in object meta: %s" % (
            want, have))
    return _kind_conflict(res_info, name, "the UID in the precondition (%s) does not match the UID in record (%s). "
                                          "The object might have been deleted and then recreated" % (want, have))


def precondition_rv(res_info, name, want, have):
    if getattr(res_info, "key", None) == "namespaces":
        return conflict(res_info, name, "Precondition failed: ResourceVersion in precondition: %s, ResourceVersion "
                                        "in object meta: %s" % (want, have))
    return _kind_conflict(res_info, name, "the ResourceVersion in the precondition (%s) does not match the "
                                          "ResourceVersion in record (%s). The object might have been modified" % (
                                              want, have))


def invalid(kind, name, causes, group=None):
    """causes: list of dicts {reason, message, field}; message format as field.ErrorList.ToAggregate()."""
    parts = ["%s: %s" % (c["field"], c["message"]) if c.get("field") else c["message"] for c in causes]
    if len(parts) == 1:
        agg = parts[0]
    else:
        agg = "[" + ", ".join(parts) + "]"
    details = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    details["kind"] = kind
    details["causes"] = causes
    qualified = kind + ("." + group if group else "")  # schema.GroupKind.String()
    return ApiError(422, "Invalid", '%s "%s" is invalid: %s' % (qualified, name or "", agg), details)


def field_invalid(field, value, detail):
    import json
    return {"reason": "FieldValueInvalid", "message": "Invalid value: %s: %s" % (json.dumps(value), detail),
            "field": field}


def field_required(field, detail=""):
    return {"reason": "FieldValueRequired", "message": "Required value" + (": " + detail if detail else ""),
            "field": field}


def field_forbidden(field, detail):
    return {"reason": "FieldValueForbidden", "message": "Forbidden: " + detail, "field": field}


def field_not_supported(field, value, supported):
    import json
    return {"reason": "FieldValueNotSupported", "message": "Unsupported value: %s: supported values: %s" % (
        json.dumps(value), ", ".join(json.dumps(s) for s in supported)), "field": field}


def too_many_requests(message, causes=None, retry_after=None):
    details = None
    headers = {}
    if causes is not None or retry_after is not None:
        details = {}
        if causes is not None:
            details["causes"] = causes
        if retry_after is not None:
            details["retryAfterSeconds"] = int(retry_after)
    if retry_after is not None:
        headers["Retry-After"] = str(int(retry_after))
    return ApiError(429, "TooManyRequests", message, details, headers)


def forbidden(res_info_or_group_resource, name, message_tail):
    """Forbidden Status: `<gr> "<name>" is forbidden: <tail>` / `<gr> is forbidden: <tail>` / `forbidden: <tail>`.

    res_info_or_group_resource: ResourceInfo, or a (group, resource) tuple, or None for non-resource URLs."""
    group, resource = "", ""
    if res_info_or_group_resource is None:
        pass
    elif isinstance(res_info_or_group_resource, tuple):
        group, resource = res_info_or_group_resource
    else:
        group, resource = res_info_or_group_resource.group, res_info_or_group_resource.plural
    qualified = resource + ("." + group if group and resource else "")
    if not resource:
        msg = "forbidden: %s" % message_tail
    elif not name:
        msg = "%s is forbidden: %s" % (qualified, message_tail)
    else:
        msg = '%s "%s" is forbidden: %s' % (qualified, name, message_tail)
    details = {}
    if name:
        details["name"] = name
    if group and resource:
        details["group"] = group
    if resource:
        details["kind"] = resource
    return ApiError(403, "Forbidden", msg, details)


def unauthorized():
    return ApiError(401, "Unauthorized", "Unauthorized")


def gone(message, continue_token=None):
    md = {"continue": continue_token} if continue_token else {}
    return ApiError(410, "Expired", message, None, metadata=md)


def bad_request(message):
    return ApiError(400, "BadRequest", message)


def method_not_allowed(message):
    return ApiError(405, "MethodNotAllowed", message, {})


def unsupported_media_type(message):
    return ApiError(415, "UnsupportedMediaType", message)


def internal_error(message):
    return ApiError(500, "InternalError", "Internal error occurred: %s" % message,
                    {"causes": [{"message": message}]})


def service_unavailable(message="the server is currently unable to handle the request"):
    return ApiError(503, "ServiceUnavailable", message, {})
