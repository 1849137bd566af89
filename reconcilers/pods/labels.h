/* labels.h — Kubernetes label key and value syntax, for spec.pods.namespaceSelector: its keys and
 * values are joined into a labelSelector query (podsel.h), where a ',' or '=' inside a value would
 * add terms nobody wrote ("a: b,kubernetes.io/metadata.name!=x").  The CRD's patterns say the same
 * for values and expression keys; matchLabels keys only kubemend checks (a map's keys have no
 * pattern in a structural schema). */
#ifndef KM_LABELS_H
#define KM_LABELS_H

/* 1 when v is a valid label value: empty, or at most 63 of [A-Za-z0-9-_.] beginning and ending
 * with an alphanumeric; else 0 (also for NULL). */
int km_labels_value_ok(const char *v);

/* 1 when k is a valid label key: [prefix/]name, prefix a DNS subdomain (at most 253 lowercase
 * [a-z0-9-.] labels), name as a non-empty label value; else 0 (also for NULL). */
int km_labels_key_ok(const char *k);

#endif
