/* csrcheck.c — pure validation of kubelet CSRs (see csrcheck.h for the checks). */
#include "reconcilers/csr/csrcheck.h"

#include <arpa/inet.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "operator/base/base64.h"
#include "operator/base/json.h"
#include "operator/base/strmap.h"

#define NODE_PREFIX "system:node:"
#define NODES_GROUP "system:nodes"
#define BOOTSTRAP_GROUP "system:bootstrappers"
#define MAX_REQUEST_BYTES (64 * 1024)

struct km_csr_policy {
    regex_t *re;
    size_t nre;
    long max_exp;
    int client;
};

/* ---- policy ------------------------------------------------------------------------------ */

void km_csr_policy_free(km_csr_policy *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->nre; i++)
        regfree(&p->re[i]);
    free(p->re);
    free(p);
}

km_status km_csr_policy_new(const char *const *dns_patterns, size_t n, long max_expiration_seconds,
                            int approve_kubelet_client, km_csr_policy **out, km_err *err)
{
    km_status st = KM_OK;
    char *anchored = NULL;
    km_csr_policy *p = calloc(1, sizeof(*p));
    if (!p)
        return km_err_set(err, KM_ENOMEM, "csr policy: out of memory");
    p->max_exp = max_expiration_seconds;
    p->client = approve_kubelet_client != 0;
    if (n > 0) {
        p->re = calloc(n, sizeof(*p->re));
        if (!p->re) {
            st = km_err_set(err, KM_ENOMEM, "csr policy: out of memory");
            goto out;
        }
    }
    for (size_t i = 0; i < n; i++) {
        const char *pat = dns_patterns[i] ? dns_patterns[i] : "";
        size_t len = strlen(pat) + 5;
        anchored = malloc(len);
        if (!anchored) {
            st = km_err_set(err, KM_ENOMEM, "csr policy: out of memory");
            goto out;
        }
        snprintf(anchored, len, "^(%s)$", pat);
        int rc = regcomp(&p->re[i], anchored, REG_EXTENDED | REG_NOSUB | REG_ICASE);
        free(anchored);
        anchored = NULL;
        if (rc != 0) {
            char msg[128];
            regerror(rc, NULL, msg, sizeof(msg));
            st = km_err_set(err, KM_EINVAL, "csr.allowedDNSPatterns[%zu] %s: %s", i, pat, msg);
            goto out;
        }
        p->nre = i + 1;
    }
    *out = p;
    p = NULL;
out:
    km_csr_policy_free(p);
    return st;
}

int km_csrcheck_handles(const km_csr_policy *p, const char *signer)
{
    if (!signer)
        return 0;
    if (strcmp(signer, KM_CSR_SIGNER_SERVING) == 0)
        return 1;
    return p && p->client && strcmp(signer, KM_CSR_SIGNER_CLIENT) == 0;
}

const char *km_csr_verdict_str(km_csr_verdict v)
{
    switch (v) {
    case KM_CSR_APPROVE:
        return "Approve";
    case KM_CSR_DENY:
        return "Deny";
    default:
        return "Ignore";
    }
}

/* ---- small helpers ----------------------------------------------------------------------- */

const char *km_csrcheck_node_name(const cJSON *csr, char *buf, size_t n)
{
    buf[0] = '\0';
    const char *user = KM_JSON_STR(csr, "spec", "username");
    size_t pl = strlen(NODE_PREFIX);
    if (!user || strncmp(user, NODE_PREFIX, pl) != 0 || user[pl] == '\0')
        return NULL;
    if (strlen(user + pl) >= n)
        return NULL;
    snprintf(buf, n, "%s", user + pl);
    return buf;
}

int km_csrcheck_is_decided(const cJSON *csr)
{
    const cJSON *c;
    cJSON_ArrayForEach(c, KM_JSON_AT(csr, "status", "conditions"))
    {
        const char *t = KM_JSON_STR(c, "type");
        if (t && (strcmp(t, "Approved") == 0 || strcmp(t, "Denied") == 0))
            return 1;
    }
    const char *cert = KM_JSON_STR(csr, "status", "certificate");
    return cert && cert[0];
}

/* Fills out with a Deny for check and returns 0 (so callers can `return deny(...)`). */
static int deny(km_csr_decision *out, const char *check, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int deny(km_csr_decision *out, const char *check, const char *fmt, ...)
{
    char detail[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    out->verdict = KM_CSR_DENY;
    snprintf(out->check, sizeof(out->check), "%s", check);
    snprintf(out->message, sizeof(out->message), "%s: %s", check, detail);
    return 0;
}

/* Parses spec.request into a new X509_REQ (caller frees) or NULL. */
static X509_REQ *parse_request(const char *b64)
{
    unsigned char *pem = NULL;
    size_t len = 0;
    if (!b64 || strlen(b64) > MAX_REQUEST_BYTES ||
        km_base64_decode(b64, strlen(b64), 0, &pem, &len) != KM_OK)
        return NULL;
    X509_REQ *req = NULL;
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (bio) {
        req = PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL);
        BIO_free(bio);
    }
    ERR_clear_error();
    free(pem);
    return req;
}

/* The text of the only entry of nid in name into buf; returns the number of such entries. */
static int name_entry(const X509_NAME *name, int nid, char *buf, size_t n)
{
    int count = 0;
    buf[0] = '\0';
    for (int i = 0; i < X509_NAME_entry_count(name); i++) {
        const X509_NAME_ENTRY *e = X509_NAME_get_entry(name, i);
        if (OBJ_obj2nid(X509_NAME_ENTRY_get_object(e)) != nid)
            continue;
        count++;
        const ASN1_STRING *d = X509_NAME_ENTRY_get_data(e);
        int l = ASN1_STRING_length(d);
        if (l >= 0 && (size_t)l < n && memchr(ASN1_STRING_get0_data(d), '\0', (size_t)l) == NULL) {
            memcpy(buf, ASN1_STRING_get0_data(d), (size_t)l);
            buf[l] = '\0';
        } else {
            snprintf(buf, n, "%s", "<unprintable>");
        }
    }
    return count;
}

/* ---- SANs -------------------------------------------------------------------------------- */

typedef struct sans {
    GENERAL_NAMES *names; /* owned; NULL = no SAN extension */
    int dns, ip, email, uri, other;
} sans;

static void sans_load(X509_REQ *req, sans *s)
{
    memset(s, 0, sizeof(*s));
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
    if (exts) {
        s->names = X509V3_get_d2i(exts, NID_subject_alt_name, NULL, NULL);
        sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    }
    ERR_clear_error();
    for (int i = 0; s->names && i < sk_GENERAL_NAME_num(s->names); i++) {
        switch (sk_GENERAL_NAME_value(s->names, i)->type) {
        case GEN_DNS:
            s->dns++;
            break;
        case GEN_IPADD:
            s->ip++;
            break;
        case GEN_EMAIL:
            s->email++;
            break;
        case GEN_URI:
            s->uri++;
            break;
        default:
            s->other++;
        }
    }
}

static void ia5_text(const ASN1_IA5STRING *a, char *buf, size_t n)
{
    int l = ASN1_STRING_length(a);
    if (l < 0 || (size_t)l >= n || memchr(ASN1_STRING_get0_data(a), '\0', (size_t)l)) {
        snprintf(buf, n, "%s", "<invalid>");
        return;
    }
    memcpy(buf, ASN1_STRING_get0_data(a), (size_t)l);
    buf[l] = '\0';
}

/* The node address types kubelets report (v1.NodeAddressType). */
static const char *const ADDRESS_TYPES[] = {"InternalIP", "ExternalIP", "InternalDNS",
                                            "ExternalDNS", "Hostname"};

static int address_type_known(const char *type)
{
    for (size_t i = 0; type && i < sizeof(ADDRESS_TYPES) / sizeof(ADDRESS_TYPES[0]); i++)
        if (strcmp(type, ADDRESS_TYPES[i]) == 0)
            return 1;
    return 0;
}

int km_csrcheck_ip_canon(const char *text, const unsigned char *raw, int len, unsigned char out[16])
{
    unsigned char b[16];
    if (text) {
        if (inet_pton(AF_INET, text, b) == 1) {
            raw = b;
            len = 4;
        } else if (inet_pton(AF_INET6, text, b) == 1) {
            raw = b;
            len = 16;
        } else {
            return 0;
        }
    }
    if (len == 16) {
        memcpy(out, raw, 16);
        return 1;
    }
    if (len != 4)
        return 0;
    memset(out, 0, 10); /* IPv4 as ::ffff:a.b.c.d, as Go's net.IP compares them */
    out[10] = out[11] = 0xff;
    memcpy(out + 12, raw, 4);
    return 1;
}

/* Non-zero when the node's status.addresses (the kubelet's types; IP, or Hostname holding an
 * IP literal as the kubelet's certificate manager turns it into an IP SAN) holds the address
 * canon (km_csrcheck_ip_canon). */
static int node_has_ip(const cJSON *node, const unsigned char canon[16])
{
    const cJSON *a;
    cJSON_ArrayForEach(a, KM_JSON_AT(node, "status", "addresses"))
    {
        const char *addr = KM_JSON_STR(a, "address");
        const char *type = KM_JSON_STR(a, "type");
        unsigned char buf[16];
        if (!addr || !address_type_known(type) || strstr(type, "DNS"))
            continue;
        if (km_csrcheck_ip_canon(addr, NULL, 0, buf) && memcmp(buf, canon, 16) == 0)
            return 1;
    }
    return 0;
}

static int node_has_dns(const cJSON *node, const char *name)
{
    const cJSON *a;
    cJSON_ArrayForEach(a, KM_JSON_AT(node, "status", "addresses"))
    {
        const char *type = KM_JSON_STR(a, "type");
        const char *addr = KM_JSON_STR(a, "address");
        if (!type || !addr)
            continue;
        if (strcmp(type, "Hostname") != 0 && strcmp(type, "InternalDNS") != 0 &&
            strcmp(type, "ExternalDNS") != 0)
            continue; /* an IP never matches a DNS SAN */
        if (strcasecmp(addr, name) == 0)
            return 1;
    }
    return 0;
}

static int pattern_matches(const km_csr_policy *p, const char *name)
{
    for (size_t i = 0; i < p->nre; i++) {
        if (regexec(&p->re[i], name, 0, NULL, 0) == 0)
            return 1;
    }
    return 0;
}

/* ---- the two signers --------------------------------------------------------------------- */

/* Usage bits. */
enum { U_DS = 1, U_KE = 2, U_SERVER = 4, U_CLIENT = 8, U_OTHER = 16 };

static int usage_bits(const cJSON *csr, char *unknown, size_t n)
{
    int bits = 0;
    const cJSON *u;
    unknown[0] = '\0';
    cJSON_ArrayForEach(u, KM_JSON_AT(csr, "spec", "usages"))
    {
        const char *s = cJSON_IsString(u) ? u->valuestring : "";
        if (strcmp(s, "digital signature") == 0)
            bits |= U_DS;
        else if (strcmp(s, "key encipherment") == 0)
            bits |= U_KE;
        else if (strcmp(s, "server auth") == 0)
            bits |= U_SERVER;
        else if (strcmp(s, "client auth") == 0)
            bits |= U_CLIENT;
        else {
            bits |= U_OTHER;
            if (!unknown[0])
                snprintf(unknown, n, "%s", s);
        }
    }
    return bits;
}

static int check_expiration(const km_csr_policy *p, const cJSON *csr, km_csr_decision *out)
{
    const cJSON *e = KM_JSON_AT(csr, "spec", "expirationSeconds");
    if (!e || cJSON_IsNull(e) || p->max_exp <= 0)
        return 1;
    if (!cJSON_IsNumber(e) || e->valuedouble > (double)p->max_exp)
        return deny(out, "expirationTooLong", "spec.expirationSeconds %.0f exceeds the maximum %ld",
                    cJSON_IsNumber(e) ? e->valuedouble : -1.0, p->max_exp);
    return 1;
}

static int check_pem_sig(const cJSON *csr, X509_REQ **reqp, km_csr_decision *out)
{
    X509_REQ *req = parse_request(KM_JSON_STR(csr, "spec", "request"));
    if (!req)
        return deny(out, "pemInvalid", "spec.request is not a PEM certificate request");
    EVP_PKEY *pk = X509_REQ_get0_pubkey(req);
    int ok = pk && X509_REQ_verify(req, pk) == 1;
    ERR_clear_error();
    if (!ok) {
        X509_REQ_free(req);
        return deny(out, "signatureInvalid", "the request's self-signature does not verify");
    }
    *reqp = req;
    return 1;
}

/* The subject is exactly CN=system:node:<name>, O=system:nodes. */
static int serving_subject(X509_REQ *req, km_csr_decision *out)
{
    char cn[300], o[300], want[300];
    const X509_NAME *subj = X509_REQ_get_subject_name(req);
    int ncn = name_entry(subj, NID_commonName, cn, sizeof(cn));
    int no = name_entry(subj, NID_organizationName, o, sizeof(o));
    snprintf(want, sizeof(want), NODE_PREFIX "%s", out->node);
    if (X509_NAME_entry_count(subj) == 2 && ncn == 1 && no == 1 && strcmp(cn, want) == 0 &&
        strcmp(o, NODES_GROUP) == 0)
        return 1;
    char *line = X509_NAME_oneline(subj, NULL, 0);
    deny(out, "subjectMismatch", "subject %s is not exactly CN=%s, O=" NODES_GROUP,
         line ? line : "?", want);
    OPENSSL_free(line);
    return 0;
}

/* Usages within {digital signature, key encipherment, server auth}, server auth among them. */
static int serving_usages(const cJSON *csr, km_csr_decision *out)
{
    char unknown[64];
    int bits = usage_bits(csr, unknown, sizeof(unknown));
    if (bits & (U_OTHER | U_CLIENT))
        return deny(out, "usageNotAllowed", "usage %s is not allowed for a serving certificate",
                    (bits & U_OTHER) ? unknown : "client auth");
    if (!(bits & U_SERVER))
        return deny(out, "serverAuthMissing", "usages do not include server auth");
    return 1;
}

/* Only DNS and IP SANs, at least one. */
static int serving_san_types(const sans *s, km_csr_decision *out)
{
    if (s->email)
        return deny(out, "emailSANPresent", "%d email SAN(s) requested", s->email);
    if (s->uri)
        return deny(out, "uriSANPresent", "%d URI SAN(s) requested", s->uri);
    if (s->other)
        return deny(out, "otherSANPresent", "%d SAN(s) of an unsupported type requested", s->other);
    if (s->dns + s->ip == 0)
        return deny(out, "noSANs", "no DNS or IP SAN requested");
    return 1;
}

/* The address index key of an IP (canonical 16 bytes) or of a DNS name into key (n >= 40 for
 * an IP; a DNS name is truncated to what fits). */
static void key_ip(const unsigned char canon[16], char *key, size_t n)
{
    size_t o = (size_t)snprintf(key, n, "ip:");
    for (int i = 0; i < 16 && o + 2 < n; i++, o += 2)
        snprintf(key + o, n - o, "%02x", canon[i]);
}

static void key_dns(const char *name, char *key, size_t n)
{
    size_t o = (size_t)snprintf(key, n, "dns:");
    for (size_t i = 0; name[i] && o + 1 < n; i++)
        key[o++] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
    key[o < n ? o : n - 1] = '\0';
}

/* A Node other than `node` among the owners of key in others (NULL = none). */
static const char *other_owner(const km_csr_addrs *others, const char *key, const char *node,
                               char *buf, size_t n);

/* Every IP SAN is an address of the node, every DNS SAN one of its names or an allowed
 * pattern; and none is an address of another Node (others, when given). */
static int serving_sans_owned(const km_csr_policy *p, const sans *s, const cJSON *node,
                              const km_csr_addrs *others, km_csr_decision *out)
{
    char key[300], other[256];
    for (int i = 0; i < sk_GENERAL_NAME_num(s->names); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(s->names, i);
        if (g->type != GEN_IPADD)
            continue;
        const unsigned char *raw = ASN1_STRING_get0_data(g->d.iPAddress);
        int len = ASN1_STRING_length(g->d.iPAddress);
        char txt[INET6_ADDRSTRLEN] = "<invalid>";
        unsigned char canon[16];
        if (len == 4 || len == 16)
            inet_ntop(len == 4 ? AF_INET : AF_INET6, raw, txt, sizeof(txt));
        if (!km_csrcheck_ip_canon(NULL, raw, len, canon) || !node_has_ip(node, canon))
            return deny(out, "ipAddressNotOwned", "IP SAN %s is not an address of node %s", txt,
                        out->node);
        key_ip(canon, key, sizeof(key));
        if (other_owner(others, key, out->node, other, sizeof(other)))
            return deny(out, "ipAddressOfOtherNode", "IP SAN %s is also an address of node %s", txt,
                        other);
    }
    for (int i = 0; i < sk_GENERAL_NAME_num(s->names); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(s->names, i);
        char name[256];
        if (g->type != GEN_DNS)
            continue;
        ia5_text(g->d.dNSName, name, sizeof(name));
        if (!node_has_dns(node, name) && !pattern_matches(p, name))
            return deny(out, "dnsNameNotOwned",
                        "DNS SAN %s is neither an address of node %s nor an allowed pattern", name,
                        out->node);
        key_dns(name, key, sizeof(key));
        if (other_owner(others, key, out->node, other, sizeof(other)))
            return deny(out, "dnsNameOfOtherNode", "DNS SAN %s is also an address of node %s", name,
                        other);
    }
    return 1;
}

static int decide_serving(const km_csr_policy *p, const cJSON *csr, const cJSON *node,
                          const km_csr_addrs *others, km_csr_decision *out)
{
    const char *user = KM_JSON_STR(csr, "spec", "username");
    if (!out->node[0])
        return deny(out, "requesterNotNode", "requester %s is not system:node:<name>",
                    user ? user : "<none>");
    if (!km_json_array_has_str(KM_JSON_AT(csr, "spec", "groups"), NODES_GROUP))
        return deny(out, "requesterGroupMissing", "requester %s is not in group system:nodes",
                    user);
    if (!check_expiration(p, csr, out))
        return 0;
    X509_REQ *req = NULL;
    if (!check_pem_sig(csr, &req, out))
        return 0;
    sans s = {0};
    int ok = serving_subject(req, out) && serving_usages(csr, out);
    if (ok) {
        sans_load(req, &s);
        ok = serving_san_types(&s, out);
    }
    if (ok && !node)
        ok = deny(out, "nodeNotFound", "node %s does not exist", out->node);
    ok = ok && serving_sans_owned(p, &s, node, others, out);
    GENERAL_NAMES_free(s.names);
    X509_REQ_free(req);
    return ok;
}

static int decide_client(const km_csr_policy *p, const cJSON *csr, km_csr_decision *out)
{
    const char *user = KM_JSON_STR(csr, "spec", "username");
    const cJSON *groups = KM_JSON_AT(csr, "spec", "groups");
    if (!check_expiration(p, csr, out))
        return 0;
    X509_REQ *req = NULL;
    if (!check_pem_sig(csr, &req, out))
        return 0;

    int ok = 0;
    sans s = {0};
    char cn[300], o[300];
    const X509_NAME *subj = X509_REQ_get_subject_name(req);
    int ncn = name_entry(subj, NID_commonName, cn, sizeof(cn));
    int no = name_entry(subj, NID_organizationName, o, sizeof(o));
    size_t pl = strlen(NODE_PREFIX);
    if (ncn == 1 && strncmp(cn, NODE_PREFIX, pl) == 0)
        snprintf(out->node, sizeof(out->node), "%.255s", cn + pl);
    else
        out->node[0] = '\0';

    int self =
        user && ncn == 1 && strcmp(user, cn) == 0 && km_json_array_has_str(groups, NODES_GROUP);
    if (!self && !km_json_array_has_str(groups, BOOTSTRAP_GROUP)) {
        deny(out, "requesterNotNode",
             "requester %s is neither the node itself (group system:nodes) nor a bootstrapper",
             user ? user : "<none>");
        goto out;
    }
    if (ncn != 1 || strncmp(cn, NODE_PREFIX, pl) != 0 || cn[pl] == '\0' || no != 1 ||
        strcmp(o, NODES_GROUP) != 0) {
        deny(out, "subjectMismatch", "subject must be CN=system:node:<name> with O exactly [%s]",
             NODES_GROUP);
        goto out;
    }
    sans_load(req, &s);
    if (s.dns + s.ip + s.email + s.uri + s.other > 0) {
        deny(out, "sansPresent", "a kubelet client certificate must not request SANs");
        goto out;
    }
    char unknown[64];
    int bits = usage_bits(csr, unknown, sizeof(unknown));
    if (bits != (U_DS | U_KE | U_CLIENT) && bits != (U_DS | U_CLIENT)) {
        deny(out, "usageNotAllowed",
             "usages must be {digital signature, [key encipherment,] client auth}");
        goto out;
    }
    ok = 1;
out:
    GENERAL_NAMES_free(s.names);
    X509_REQ_free(req);
    return ok;
}

void km_csrcheck_decide(const km_csr_policy *p, const cJSON *csr, const cJSON *node,
                        km_csr_decision *out)
{
    km_csrcheck_decide_among(p, csr, node, NULL, out);
}

void km_csrcheck_decide_among(const km_csr_policy *p, const cJSON *csr, const cJSON *node,
                              const km_csr_addrs *others, km_csr_decision *out)
{
    memset(out, 0, sizeof(*out));
    const char *signer = KM_JSON_STR(csr, "spec", "signerName");
    km_csrcheck_node_name(csr, out->node, sizeof(out->node));
    if (!km_csrcheck_handles(p, signer)) {
        out->verdict = KM_CSR_IGNORE;
        snprintf(out->message, sizeof(out->message), "signer %s is not handled",
                 signer ? signer : "<none>");
        return;
    }
    int ok = strcmp(signer, KM_CSR_SIGNER_SERVING) == 0 ? decide_serving(p, csr, node, others, out)
                                                        : decide_client(p, csr, out);
    if (ok) {
        out->verdict = KM_CSR_APPROVE;
        out->check[0] = '\0';
        snprintf(out->message, sizeof(out->message), "all checks passed for %.64s of node %.255s",
                 signer, out->node);
    }
}

/* ---- the address index of the Nodes ------------------------------------------------------ */

struct km_csr_addrs {
    km_strmap *owners; /* address key -> "name[,name...]" (malloc'ed) */
};

km_status km_csr_addrs_new(km_csr_addrs **out, km_err *err)
{
    km_csr_addrs *a = calloc(1, sizeof(*a));
    if (!a || !(a->owners = km_strmap_new())) {
        free(a);
        return km_err_set(err, KM_ENOMEM, "csr: out of memory");
    }
    *out = a;
    return KM_OK;
}

static int free_val(const char *key, void *val, void *user)
{
    (void)key;
    (void)user;
    free(val);
    return 0;
}

void km_csr_addrs_free(km_csr_addrs *a)
{
    if (!a)
        return;
    km_strmap_each(a->owners, free_val, NULL);
    km_strmap_free(a->owners);
    free(a);
}

size_t km_csr_addrs_len(const km_csr_addrs *a)
{
    return a ? km_strmap_len(a->owners) : 0;
}

/* Adds name to the owners of key (once). */
static km_status own(km_csr_addrs *a, const char *key, const char *name)
{
    char *had = km_strmap_get(a->owners, key);
    size_t nl = strlen(name);
    for (const char *p = had; p && *p; p += strcspn(p, ",") + (p[strcspn(p, ",")] ? 1 : 0))
        if (strncmp(p, name, nl) == 0 && (p[nl] == ',' || p[nl] == '\0'))
            return KM_OK;
    size_t n = (had ? strlen(had) + 1 : 0) + nl + 1;
    char *v = malloc(n);
    if (!v)
        return KM_ENOMEM;
    snprintf(v, n, "%s%s%s", had ? had : "", had ? "," : "", name);
    if (km_strmap_put(a->owners, key, v, NULL) != KM_OK) {
        free(v);
        return KM_ENOMEM;
    }
    free(had);
    return KM_OK;
}

km_status km_csr_addrs_add_node(km_csr_addrs *a, const cJSON *node, km_err *err)
{
    const char *name = KM_JSON_STR(node, "metadata", "name");
    const cJSON *it;
    if (!name)
        return KM_OK;
    cJSON_ArrayForEach(it, KM_JSON_AT(node, "status", "addresses"))
    {
        const char *type = KM_JSON_STR(it, "type");
        const char *addr = KM_JSON_STR(it, "address");
        unsigned char canon[16];
        char key[300];
        if (!addr || !address_type_known(type))
            continue;
        if (!strstr(type, "DNS") && km_csrcheck_ip_canon(addr, NULL, 0, canon))
            key_ip(canon, key, sizeof(key));
        else if (strstr(type, "DNS") || strcmp(type, "Hostname") == 0)
            key_dns(addr, key, sizeof(key));
        else
            continue; /* an InternalIP/ExternalIP that is no IP */
        if (own(a, key, name) != KM_OK)
            return km_err_set(err, KM_ENOMEM, "csr: out of memory");
    }
    return KM_OK;
}

static const char *other_owner(const km_csr_addrs *others, const char *key, const char *node,
                               char *buf, size_t n)
{
    const char *v = others ? km_strmap_get(others->owners, key) : NULL;
    size_t nl = strlen(node);
    while (v && *v) {
        size_t l = strcspn(v, ",");
        if (!(l == nl && strncmp(v, node, nl) == 0)) {
            snprintf(buf, n, "%.*s", (int)l, v);
            return buf;
        }
        v += l + (v[l] ? 1 : 0);
    }
    return NULL;
}
