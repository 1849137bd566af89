/* yamljson.c — libyaml event stream -> cJSON tree. */
#include "operator/base/yamljson.h"

#include <errno.h>
#include <math.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "operator/base/buf.h"

#define YJ_MAX_FILE (4u << 20)
#define YJ_MAX_DEPTH 64
#define YJ_MAX_ANCHORS 64

typedef struct anchor {
    char *name;
    cJSON *node; /* a copy owned here */
} anchor;

typedef struct yj {
    yaml_parser_t parser;
    anchor anchors[YJ_MAX_ANCHORS];
    int nanchors;
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

static int full_match(const char *pattern, const char *s)
{
    regex_t re;
    if (regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB) != 0)
        return 0;
    int ok = regexec(&re, s, 0, NULL, 0) == 0;
    regfree(&re);
    return ok;
}

/* YAML 1.2 core schema resolution of a plain scalar. */
static cJSON *plain_scalar(const char *v)
{
    if (!*v || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 ||
        strcmp(v, "NULL") == 0)
        return cJSON_CreateNull();
    if (strcmp(v, "true") == 0 || strcmp(v, "True") == 0 || strcmp(v, "TRUE") == 0)
        return cJSON_CreateTrue();
    if (strcmp(v, "false") == 0 || strcmp(v, "False") == 0 || strcmp(v, "FALSE") == 0)
        return cJSON_CreateFalse();
    if (full_match("^[-+]?[0-9]+$", v)) {
        char *end = NULL;
        errno = 0;
        long long n = strtoll(v, &end, 10);
        if (errno == 0 && end && *end == '\0')
            return cJSON_CreateNumber((double)n);
    }
    if (full_match("^0x[0-9a-fA-F]+$", v))
        return cJSON_CreateNumber((double)strtoull(v + 2, NULL, 16));
    if (full_match("^0o[0-7]+$", v))
        return cJSON_CreateNumber((double)strtoull(v + 2, NULL, 8));
    if (full_match("^[-+]?(\\.[0-9]+|[0-9]+(\\.[0-9]*)?)([eE][-+]?[0-9]+)?$", v))
        return cJSON_CreateNumber(strtod(v, NULL));
    if (full_match("^[-+]?\\.(inf|Inf|INF)$", v))
        return cJSON_CreateNumber(v[0] == '-' ? -HUGE_VAL : HUGE_VAL);
    return cJSON_CreateString(v);
}

static km_status remember_anchor(yj *y, const yaml_event_t *ev, const char *name, const cJSON *node)
{
    if (!name)
        return KM_OK;
    if (y->nanchors >= YJ_MAX_ANCHORS)
        return yj_fail(y, ev, "too many anchors");
    anchor *a = &y->anchors[y->nanchors];
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

static km_status parse_collection(yj *y, yaml_event_t *start, int depth, cJSON **out)
{
    int is_map = start->type == YAML_MAPPING_START_EVENT;
    yaml_event_type_t end_type = is_map ? YAML_MAPPING_END_EVENT : YAML_SEQUENCE_END_EVENT;
    char *anchor_name = NULL;
    const char *a = (const char *)(is_map ? start->data.mapping_start.anchor
                                          : start->data.sequence_start.anchor);
    km_status st = KM_OK;
    cJSON *coll = is_map ? cJSON_CreateObject() : cJSON_CreateArray();
    if (!coll || (a && !(anchor_name = strdup(a)))) {
        st = km_err_set(y->err, KM_ENOMEM, "YAML: out of memory");
        goto out;
    }
    if (depth > YJ_MAX_DEPTH) {
        st = yj_fail(y, start, "nesting deeper than %d levels", YJ_MAX_DEPTH);
        goto out;
    }
    for (;;) {
        yaml_event_t ev;
        st = yj_next(y, &ev);
        if (st != KM_OK)
            goto out;
        if (ev.type == end_type) {
            yaml_event_delete(&ev);
            break;
        }
        char *key = NULL;
        if (is_map) {
            if (ev.type != YAML_SCALAR_EVENT) {
                st = yj_fail(y, &ev, "mapping keys must be scalars");
                yaml_event_delete(&ev);
                goto out;
            }
            key = strdup((const char *)ev.data.scalar.value);
            if (!key) {
                yaml_event_delete(&ev);
                st = km_err_set(y->err, KM_ENOMEM, "YAML: out of memory");
                goto out;
            }
            if (cJSON_GetObjectItemCaseSensitive(coll, key)) {
                st = yj_fail(y, &ev, "duplicate key \"%s\"", key);
                yaml_event_delete(&ev);
                free(key);
                goto out;
            }
            yaml_event_delete(&ev);
            st = yj_next(y, &ev);
            if (st != KM_OK) {
                free(key);
                goto out;
            }
        }
        cJSON *child = NULL;
        st = parse_node(y, &ev, depth + 1, &child);
        yaml_event_delete(&ev);
        if (st != KM_OK) {
            free(key);
            goto out;
        }
        int ok =
            is_map ? cJSON_AddItemToObject(coll, key, child) : cJSON_AddItemToArray(coll, child);
        free(key);
        if (!ok) {
            cJSON_Delete(child);
            st = km_err_set(y->err, KM_ENOMEM, "YAML: out of memory");
            goto out;
        }
    }
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
