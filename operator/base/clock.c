/* clock.c — monotonic time, deadlines, the cancellable sleep, RFC 3339 text (see clock.h). */
#include "operator/base/clock.h"

#include <stdio.h>

#define SLEEP_SLICE 0.05

double km_clock_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct timespec km_clock_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts;
}

struct timespec km_clock_deadline(clockid_t clock, double seconds)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    if (seconds > 0) {
        time_t whole = (time_t)seconds;
        ts.tv_sec += whole;
        ts.tv_nsec += (long)((seconds - (double)whole) * 1e9);
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
    }
    return ts;
}

int km_clock_cond_init(pthread_cond_t *cv, clockid_t clock)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, clock);
    int rc = pthread_cond_init(cv, &ca);
    pthread_condattr_destroy(&ca);
    return rc;
}

km_status km_clock_sleep(double seconds, const atomic_int *cancel)
{
    double end = km_clock_mono() + seconds;
    for (;;) {
        if (cancel && atomic_load(cancel))
            return KM_ECANCELED;
        double left = end - km_clock_mono();
        if (left <= 0)
            return KM_OK;
        if (left > SLEEP_SLICE)
            left = SLEEP_SLICE;
        struct timespec ts = {0, (long)(left * 1e9)};
        nanosleep(&ts, NULL);
    }
}

const char *km_clock_format(struct timespec t, int frac, char *buf, size_t n)
{
    struct tm tm;
    if (n == 0)
        return buf;
    size_t len = 0;
    if (gmtime_r(&t.tv_sec, &tm))
        len = strftime(buf, n, "%Y-%m-%dT%H:%M:%S", &tm);
    if (len == 0) {
        buf[0] = '\0';
        return buf;
    }
    if (frac == 3)
        snprintf(buf + len, n - len, ".%03ldZ", t.tv_nsec / 1000000);
    else if (frac == 6)
        snprintf(buf + len, n - len, ".%06ldZ", t.tv_nsec / 1000);
    else
        snprintf(buf + len, n - len, "Z");
    return buf;
}

const char *km_clock_format_s(time_t t, char *buf, size_t n)
{
    struct timespec ts = {t, 0};
    return km_clock_format(ts, 0, buf, n);
}

const char *km_clock_now_text(char *buf, size_t n)
{
    return km_clock_format_s(time(NULL), buf, n);
}

/* Reads exactly n digits at *p into *v and advances.  0 on success. */
static int digits(const char **p, int n, int *v)
{
    int x = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return -1;
        x = x * 10 + (c - '0');
    }
    *p += n;
    *v = x;
    return 0;
}

/* The zone at *p ("Z", "+HH:MM", "-HH:MM") as seconds east of UTC in *off; advances.  0 on
 * success. */
static int zone(const char **p, int *off)
{
    int oh = 0, om = 0, sign;
    if (**p == 'Z' || **p == 'z') {
        (*p)++;
        *off = 0;
        return 0;
    }
    if (**p != '+' && **p != '-')
        return -1;
    sign = **p == '-' ? -1 : 1;
    (*p)++;
    if (digits(p, 2, &oh) || *(*p)++ != ':' || digits(p, 2, &om))
        return -1;
    *off = sign * (oh * 3600 + om * 60);
    return 0;
}

km_status km_clock_parse(const char *s, time_t *out)
{
    int y, mo, d, h, mi, se, off = 0;
    const char *p = s;
    if (!s || digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) || *p++ != '-' ||
        digits(&p, 2, &d) || (*p != 'T' && *p != 't' && *p != ' '))
        return KM_EPARSE;
    p++;
    if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi) || *p++ != ':' || digits(&p, 2, &se))
        return KM_EPARSE;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return KM_EPARSE;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (zone(&p, &off) || *p || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
        se > 60)
        return KM_EPARSE;
    struct tm tm = {0};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = se;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return KM_EPARSE;
    *out = t - off;
    return KM_OK;
}
