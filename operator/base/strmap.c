/* strmap.c — chained string hash map. */
#include "operator/base/strmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
    struct entry *next;
    uint64_t hash;
    void *val;
    char key[]; /* NUL-terminated copy */
} entry;

struct km_strmap {
    entry **buckets;
    size_t nbuckets; /* power of two */
    size_t len;
};

static uint64_t hash_str(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ull;
    }
    return h;
}

km_strmap *km_strmap_new(void)
{
    km_strmap *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->nbuckets = 16;
    m->buckets = calloc(m->nbuckets, sizeof(*m->buckets));
    if (!m->buckets) {
        free(m);
        return NULL;
    }
    return m;
}

void km_strmap_free(km_strmap *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->nbuckets; i++) {
        entry *e = m->buckets[i];
        while (e) {
            entry *next = e->next;
            free(e);
            e = next;
        }
    }
    free(m->buckets);
    free(m);
}

size_t km_strmap_len(const km_strmap *m)
{
    return m->len;
}

static entry **find(const km_strmap *m, const char *key, uint64_t h)
{
    entry **pp = &m->buckets[h & (m->nbuckets - 1)];
    while (*pp && ((*pp)->hash != h || strcmp((*pp)->key, key) != 0))
        pp = &(*pp)->next;
    return pp;
}

void *km_strmap_get(const km_strmap *m, const char *key)
{
    entry *e = *find(m, key, hash_str(key));
    return e ? e->val : NULL;
}

int km_strmap_has(const km_strmap *m, const char *key)
{
    return *find(m, key, hash_str(key)) != NULL;
}

/* Doubles the bucket array; on allocation failure the map just stays denser. */
static void grow(km_strmap *m)
{
    if (m->nbuckets > SIZE_MAX / 2 / sizeof(entry *))
        return;
    size_t n = m->nbuckets * 2;
    entry **b = calloc(n, sizeof(*b));
    if (!b)
        return;
    for (size_t i = 0; i < m->nbuckets; i++) {
        entry *e = m->buckets[i];
        while (e) {
            entry *next = e->next;
            entry **slot = &b[e->hash & (n - 1)];
            e->next = *slot;
            *slot = e;
            e = next;
        }
    }
    free(m->buckets);
    m->buckets = b;
    m->nbuckets = n;
}

km_status km_strmap_put(km_strmap *m, const char *key, void *val, void **old)
{
    uint64_t h = hash_str(key);
    entry **pp = find(m, key, h);
    if (*pp) {
        if (old)
            *old = (*pp)->val;
        (*pp)->val = val;
        return KM_OK;
    }
    size_t klen = strlen(key);
    entry *e = malloc(sizeof(*e) + klen + 1);
    if (!e)
        return KM_ENOMEM;
    memcpy(e->key, key, klen + 1);
    e->hash = h;
    e->val = val;
    e->next = NULL;
    *pp = e;
    m->len++;
    if (old)
        *old = NULL;
    if (m->len > m->nbuckets)
        grow(m);
    return KM_OK;
}

void *km_strmap_remove(km_strmap *m, const char *key)
{
    entry **pp = find(m, key, hash_str(key));
    entry *e = *pp;
    if (!e)
        return NULL;
    *pp = e->next;
    void *val = e->val;
    free(e);
    m->len--;
    return val;
}

void km_strmap_each(const km_strmap *m, km_strmap_fn fn, void *user)
{
    for (size_t i = 0; i < m->nbuckets; i++)
        for (entry *e = m->buckets[i]; e; e = e->next)
            if (fn(e->key, e->val, user))
                return;
}
