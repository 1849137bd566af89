"""Small helpers shared by the e2e test modules."""

import time


def wait_for(pred, timeout=60, what="condition"):
    end = time.time() + timeout
    last = None
    while time.time() < end:
        last = pred()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError("%s not reached within %ss (last=%r)" % (what, timeout, last))


def pems(bundle):
    """The PEM certificates of a bundle, each normalized to end with one newline."""
    return ["-----BEGIN" + p.split("-----BEGIN", 1)[1] + "-----END CERTIFICATE-----\n"
            for p in bundle.split("-----END CERTIFICATE-----") if "-----BEGIN" in p]


def extauth(cp):
    return cp.client().get("/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication")["data"]
