"""realk8s: a real Kubernetes control plane (etcd + kube-apiserver + kube-controller-manager) for kubemend's
tests, with a kubeadm-like PKI, the PKI-rebuild disaster, a kubelet + scheduler simulator and the seed scenario.
See tests/realk8s/README.md."""

import os
import sys

REALK8S_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO_ROOT = os.path.dirname(os.path.dirname(REALK8S_DIR))
APISIM_DIR = os.path.join(os.path.dirname(REALK8S_DIR), "apisim")

# apisim's openssl-CLI PKI helpers and CSR builder are reused, not copied.
if APISIM_DIR not in sys.path:
    sys.path.insert(0, APISIM_DIR)
