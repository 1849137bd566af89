/* yamljson.c — libyaml event stream -> cJSON tree. */
#include "operator/base/yamljson.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "operator/base/buf.h"
#include "operator/base/strmap.h"

#define YJ_MAX_FILE (4u << 20)
#define YJ_MAX_ANCHORS 64

typedef struct anchor {
    char *name;
    cJSON *node;  /* a copy owned here */
    size_t nodes; /* its size, charged again for every alias to it */
    size_t bytes;
} anchor;

typedef struct yj {
    yaml_parser_t parser;
    anchor anchors[YJ_MAX_ANCHORS];
    int nanchors;
    size_t nodes; /* nodes made so far (copies included): the budget */
    size_t bytes; /* scalar bytes made so far (copies included) */
    km_err *err;
} yj;

static km_status yj_fail(yj *y, const yaml_event_t *ev, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static km_status yj_fail(yj *y, const yaml_event_t *ev, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (ev)
        return km_err_set(y->err, KM_EPARSE, "line %lu column %lu: %s",
                          (unsigned long)ev->start_mark.line + 1,
                          (unsigned long)ev->start_mark.column + 1, msg);
    return km_err_set(y->err, KM_EPARSE, "%s", msg);
}

static km_status yj_next(yj *y, yaml_event_t *ev)
{
    if (!yaml_parser_parse(&y->parser, ev)) {
        const char *problem = y->parser.problem ? y->parser.problem : "invalid YAML";
        return km_err_set(y->err, KM_EPARSE, "line %lu column %lu: %s",
                          (unsigned long)y->parser.problem_mark.line + 1,
                          (unsigned long)y->parser.problem_mark.column + 1, problem);
    }
    return KM_OK;
}

/* Length of the run of characters of s accepted by ok (s may be empty). */
static size_t span(const char *s, int (*ok)(int c))
{
    size_t n = 0;
    while (s[n] && ok((unsigned char)s[n]))
        n++;
    return n;
}

static int is_dec(int c)
{
    return c >= '0' && c <= '9';
}

static int is_oct(int c)
{
    return c >= '0' && c <= '7';
}

static int is_hex(int c)
{
    return is_dec(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* ^[-+]?[0-9]+$ */
static int is_int(const char *v)
{
    const char *p = v + (*v == '-' || *v == '+');
    size_t n = span(p, is_dec);
    return n > 0 && p[n] == '\0';
}

/* ^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$ */
static int is_float(const char *v)
{
    const char *p = v + (*v == '-' || *v == '+');
    if (*p == '.') {
        size_t f = span(p + 1, is_dec);
        if (f == 0)
            return 0;
        p += 1 + f;
    } else {
        size_t i = span(p, is_dec);
        if (i == 0)
            return 0;
        p += i;
        if (*p == '.')
            p += 1 + span(p + 1, is_dec);
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        p += *p == '-' || *p == '+';
        size_t e = span(p, is_dec);
        if (e == 0)
            return 0;
        p += e;
    }
    return *p == '\0';
}

/* ^[-+]?\.(inf|Inf|INF)$ */
static int is_inf(const char *v)
{
    const char *p = v + (*v == '-' || *v == '+');
    return strcmp(p, ".inf") == 0 || strcmp(p, ".Inf") == 0 || strcmp(p, ".INF") == 0;
}

/* YAML 1.2 core schema resolution of a plain scalar; no regex, one pass or two per value. */
static cJSON *plain_scalar(const char *v)
{
    if (!*v || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 ||
        strcmp(v, "NULL") == 0)
        return cJSON_CreateNull();
    if (strcmp(v, "true") == 0 || strcmp(v, "True") == 0 || strcmp(v, "TRUE") == 0)
        return cJSON_CreateTrue();
    if (strcmp(v, "false") == 0 || strcmp(v, "False") == 0 || strcmp(v, "FALSE") == 0)
        return cJSON_CreateFalse();
    char c = *v;
    if (!is_dec((unsigned char)c) && c != '-' && c != '+' && c != '.')
        return cJSON_CreateString(v); /* the common case: a word */
    if (is_int(v)) {
        char *end = NULL;
        errno = 0;
        long long n = strtoll(v, &end, 10);
        if (errno == 0 && end && *end == '\0')
            return cJSON_CreateNumber((double)n);
    }
    if (v[0] == '0' && v[1] == 'x' && v[2] && v[2 + span(v + 2, is_hex)] == '\0')
        return cJSON_CreateNumber((double)strtoull(v + 2, NULL, 16));
    if (v[0] == '0' && v[1] == 'o' && v[2] && v[2 + span(v + 2, is_oct)] == '\0')
        return cJSON_CreateNumber((double)strtoull(v + 2, NULL, 8));
    if (is_float(v))
        return cJSON_CreateNumber(strtod(v, NULL));
    if (is_inf(v))
        return cJSON_CreateNumber(v[0] == '-' ? -HUGE_VAL : HUGE_VAL);
    return cJSON_CreateString(v);
}

/* Nodes and scalar bytes of a tree (for the budget). */
static void tree_size(const cJSON *n, size_t *nodes, size_t *bytes)
{
    for (; n; n = n->next) {
        *nodes += 1;
        if (n->valuestring)
            *bytes += strlen(n->valuestring);
        if (n->string)
            *bytes += strlen(n->string);
        tree_size(n->child, nodes, bytes);
    }
}

/* Charges nodes/bytes to the budget: KM_ETOOBIG (as a parse error naming the line) when the
 * document would exceed it (an alias bomb, or a document too large). */
static km_status charge(yj *y, const yaml_event_t *ev, size_t nodes, size_t bytes)
{
    if (nodes > KM_YAML_MAX_NODES - y->nodes || bytes > KM_YAML_MAX_BYTES - y->bytes) {
        yj_fail(y, ev, "document too large: more than %d nodes or %d MiB once aliases are expanded",
                KM_YAML_MAX_NODES, KM_YAML_MAX_BYTES >> 20);
        return KM_EPARSE;
    }
    y->nodes += nodes;
    y->bytes += bytes;
    return KM_OK;
}

static km_status remember_anchor(yj *y, const yaml_event_t *ev, const char *name, const cJSON *node)
{
    if (!name)
        return KM_OK;
    if (y->nanchors >= YJ_MAX_ANCHORS)
        return yj_fail(y, ev, "too many anchors");
    anchor *a = &y->anchors[y->nanchors];
    memset(a, 0, sizeof(*a));
    tree_size(node, &a->nodes, &a->bytes);
    km_status st = charge(y, ev, a->nodes, a->bytes); /* the copy kept here */
    if (st != KM_OK)
        return st;
    a->name = strdup(name);
    a->node = cJSON_Duplicate(node, 1);
    if (!a->name || !a->node) {
        free(a->name);
        cJSON_Delete(a->node);
        return km_err_set(y->err, KM_ENOMEM, "YAML: out of memory");
    }
    y->nanchors++;
    return KM_OK;
}

static km_status parse_node(yj *y, yaml_event_t *ev, int depth, cJSON **out);

/* Reads a mapping key (ev, consumed by the caller) into *key (malloc'ed, caller frees): a scalar
 * not seen before in this mapping.  keys indexes the mapping's keys (a lookup in the cJSON object
 * is linear: a mapping of many keys would be quadratic). */
static km_status read_key(yj *y, const yaml_event_t *ev, km_strmap *keys, char **key)
{
    if (ev->type != YAML_SCALAR_EVENT)
        return yj_fail(y, ev, "mapping keys must be scalars");
    km_status st = charge(y, ev, 0, ev->data.scalar.length);
    if (st != KM_OK)
        return st;
    const char *k = (const char *)ev->data.scalar.value;
    if (km_strmap_has(keys, k))
        return yj_fail(y, ev, "duplicate key \"%.200s\"", k);
    if (km_strmap_put(keys, k, (void *)1, NULL) != KM_OK || !(*key = strdup(k)))
        return km_err_set(y->err, KM_ENOMEM, "YAML: out of memory");
    return KM_OK;
}

/* Reads the entries of a collection up to its end event into coll. */
static km_status read_entries(yj *y, cJSON *coll, int is_map, int depth)
{
    yaml_event_type_t end_type = is_map ? YAML_MAPPING_END_EVENT : YAML_SEQUENCE_END_EVENT;
    km_strmap *keys = is_map ? km_strmap_new() : NULL;
    km_status st = is_map && !keys ? km_err_set(y->err, KM_ENOMEM, "YAML: out of memory") : KM_OK;
    while (st == KM_OK) {
        yaml_event_t ev;
        char *key = NULL;
        if ((st = yj_next(y, &ev)) != KM_OK)
            break;
        if (ev.type == end_type) {
            yaml_event_delete(&ev);
            break;
        }
        if (is_map) {
            st = read_key(y, &ev, keys, &key);
            yaml_event_delete(&ev);
            if (st == KM_OK)
                st = yj_next(y, &ev);
            if (st != KM_OK) {
                free(key);
                break;
            }
        }
        cJSON *child = NULL;
        st = parse_node(y, &ev, depth + 1, &child);
        yaml_event_delete(&ev);
        if (st == KM_OK && !(is_map ? cJSON_AddItemToObject(coll, key, child)
                                    : cJSON_AddItemToArray(coll, child))) {
            cJSON_Delete(child);
            st = km_err_set(y->err, KM_ENOMEM, "YAML: out of memory");
        }
        free(key);
    }
    km_strmap_free(keys);
    return st;
}

static km_status parse_collection(yj *y, yaml_event_t *start, int depth, cJSON **out)
{
    int is_map = start->type == YAML_MAPPING_START_EVENT;
    char *anchor_name = NULL;
    const char *a = (const char *)(is_map ? start->data.mapping_start.anchor
                                          : start->data.sequence_start.anchor);
    km_status st = KM_OK;
    cJSON *coll = is_map ? cJSON_CreateObject() : cJSON_CreateArray();
    if (!coll || (a && !(anchor_name = strdup(a)))) {
        st = km_err_set(y->err, KM_ENOMEM, "YAML: out of memory");
        goto out;
    }
    if (depth > KM_YAML_MAX_DEPTH) {
        st = yj_fail(y, start, "nesting deeper than %d levels", KM_YAML_MAX_DEPTH);
        goto out;
    }
    if ((st = charge(y, start, 1, 0)) != KM_OK ||
        (st = read_entries(y, coll, is_map, depth)) != KM_OK)
        goto out;
    st = remember_anchor(y, start, anchor_name, coll);
    if (st == KM_OK) {
        *out = coll;
        coll = NULL;
    }
out:
    free(anchor_name);
    cJSON_Delete(coll);
    return st;
}

/* Converts the node that starts with *ev (consumed by the caller) into *out. */
static km_status parse_node(yj *y, yaml_event_t *ev, int depth, cJSON **out)
{
    switch (ev->type) {
    case YAML_SCALAR_EVENT: {
        const char *v = (const char *)ev->data.scalar.value;
        km_status cs = charge(y, ev, 1, ev->data.scalar.length);
        if (cs != KM_OK)
            return cs;
        cJSON *node = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE ? plain_scalar(v)
                                                                       : cJSON_CreateString(v);
        if (ev->data.scalar.tag &&
            strcmp((const char *)ev->data.scalar.tag, "tag:yaml.org,2002:str") == 0) {
            cJSON_Delete(node);
            node = cJSON_CreateString(v);
        }
        if (!node)
            return km_err_set(y->err, KM_ENOMEM, "YAML: out of memory");
        km_status st = remember_anchor(y, ev, (const char *)ev->data.scalar.anchor, node);
        if (st != KM_OK) {
            cJSON_Delete(node);
            return st;
        }
        *out = node;
        return KM_OK;
    }
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT:
        return parse_collection(y, ev, depth, out);
    case YAML_ALIAS_EVENT: {
        const char *name = (const char *)ev->data.alias.anchor;
        for (int i = y->nanchors - 1; i >= 0; i--) {
            if (strcmp(y->anchors[i].name, name) == 0) {
                km_status cs = charge(y, ev, y->anchors[i].nodes, y->anchors[i].bytes);
                if (cs != KM_OK)
                    return cs;
                cJSON *copy = cJSON_Duplicate(y->anchors[i].node, 1);
                if (!copy)
                    return km_err_set(y->err, KM_ENOMEM, "YAML: out of memory");
                *out = copy;
                return KM_OK;
            }
        }
        return yj_fail(y, ev, "unknown alias *%s", name);
    }
    default:
        return yj_fail(y, ev, "unexpected YAML event");
    }
}

km_status km_yaml_parse(const char *s, size_t n, cJSON **out, km_err *err)
{
    yj y;
    memset(&y, 0, sizeof(y));
    y.err = err;
    if (!yaml_parser_initialize(&y.parser))
        return km_err_set(err, KM_ENOMEM, "YAML: out of memory");
    yaml_parser_set_input_string(&y.parser, (const unsigned char *)s, n);
    cJSON *doc = NULL;
    km_status st = KM_OK;
    int done = 0;
    while (!done) {
        yaml_event_t ev;
        st = yj_next(&y, &ev);
        if (st != KM_OK)
            goto out;
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = 1;
            break;
        case YAML_STREAM_START_EVENT:
        case YAML_DOCUMENT_START_EVENT:
        case YAML_DOCUMENT_END_EVENT:
            break;
        default: {
            cJSON *node = NULL;
            st = parse_node(&y, &ev, 0, &node);
            if (st != KM_OK) {
                yaml_event_delete(&ev);
                goto out;
            }
            if (cJSON_IsNull(node) && doc == NULL) {
                cJSON_Delete(node); /* an empty document: skip */
                break;
            }
            if (doc) {
                cJSON_Delete(node);
                st = yj_fail(&y, &ev, "more than one YAML document (expected exactly one)");
                yaml_event_delete(&ev);
                goto out;
            }
            doc = node;
            break;
        }
        }
        yaml_event_delete(&ev);
    }
    if (!doc && !(doc = cJSON_CreateNull())) {
        st = km_err_set(err, KM_ENOMEM, "YAML: out of memory");
        goto out;
    }
    *out = doc;
    doc = NULL;
out:
    cJSON_Delete(doc);
    for (int i = 0; i < y.nanchors; i++) {
        free(y.anchors[i].name);
        cJSON_Delete(y.anchors[i].node);
    }
    yaml_parser_delete(&y.parser);
    return st;
}

km_status km_yaml_check(const char *s, size_t n, km_err *err)
{
    yj y;
    memset(&y, 0, sizeof(y));
    y.err = err;
    if (!yaml_parser_initialize(&y.parser))
        return km_err_set(err, KM_ENOMEM, "YAML: out of memory");
    yaml_parser_set_input_string(&y.parser, (const unsigned char *)s, n);
    km_status st = KM_OK;
    int depth = 0, done = 0;
    while (st == KM_OK && !done) {
        yaml_event_t ev;
        if ((st = yj_next(&y, &ev)) != KM_OK)
            break;
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = 1;
            break;
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
            if (++depth > KM_YAML_MAX_DEPTH + 1)
                st = yj_fail(&y, &ev, "nesting deeper than %d levels", KM_YAML_MAX_DEPTH);
            else
                st = charge(&y, &ev, 1, 0);
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            depth--;
            break;
        case YAML_SCALAR_EVENT:
            st = charge(&y, &ev, 1, ev.data.scalar.length);
            break;
        case YAML_ALIAS_EVENT:
            st = charge(&y, &ev, 1, 0);
            break;
        default:
            break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&y.parser);
    return st;
}

km_status km_yaml_parse_file(const char *path, cJSON **out, km_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return km_err_set(err, KM_EIO, "%s: %s", path, strerror(errno));
    km_buf b;
    km_buf_init(&b, YJ_MAX_FILE);
    km_status st = KM_OK;
    char chunk[8192];
    size_t r;
    while ((r = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        st = km_buf_append(&b, chunk, r);
        if (st != KM_OK) {
            km_err_set(err, st, "%s: %s", path,
                       st == KM_ETOOBIG ? "file larger than 4 MiB" : "out of memory");
            goto out;
        }
    }
    if (ferror(f)) {
        st = km_err_set(err, KM_EIO, "%s: read error", path);
        goto out;
    }
    st = km_yaml_parse(b.data ? b.data : "", b.len, out, err);
    if (st != KM_OK)
        km_err_prefix(err, "%s", path);
out:
    fclose(f);
    km_buf_cleanup(&b);
    return st;
}
