"""Small helpers shared by the e2e test modules."""

from realk8s.seed import wait_for  # noqa: F401 - re-exported for the tests


def pems(bundle):
    """The PEM certificates of a bundle, each normalized to end with one newline."""
    return ["-----BEGIN" + p.split("-----BEGIN", 1)[1] + "-----END CERTIFICATE-----\n"
            for p in bundle.split("-----END CERTIFICATE-----") if "-----BEGIN" in p]


def extauth(cp):
    return cp.client().get("/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication")["data"]
