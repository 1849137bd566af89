/* clock.h — time in one place: the monotonic clock, deadlines for condition variables, the
 * cancellable sleep, and wall-clock time as RFC 3339 text (one formatter, one strict parser).
 *
 * Durations and timeouts use CLOCK_MONOTONIC (km_clock_mono), which never jumps; wall-clock time
 * is only for what is written into objects and logs ("2026-11-26T09:56:52Z").  Kubernetes
 * timestamps have one-second resolution (metav1.Time) or microseconds (metav1.MicroTime, Lease
 * renewTime); logs use milliseconds. */
#ifndef KM_CLOCK_H
#define KM_CLOCK_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <time.h>

#include "operator/base/err.h"

/* Room for any text km_clock_format writes, with its NUL. */
#define KM_CLOCK_TEXT_MAX 32

/* CLOCK_MONOTONIC in seconds.  Cannot fail. */
double km_clock_mono(void);

/* CLOCK_REALTIME now.  Cannot fail. */
struct timespec km_clock_wall(void);

/* The absolute time `seconds` from now on `clock` (CLOCK_MONOTONIC or CLOCK_REALTIME: the clock
 * of the condition variable it is for), for pthread_cond_timedwait.  seconds <= 0 = now. */
struct timespec km_clock_deadline(clockid_t clock, double seconds);

/* Initialises a condition variable whose timed waits are measured on `clock` (deadlines from
 * km_clock_deadline with the same clock).  0, or pthread_cond_init's error. */
int km_clock_cond_init(pthread_cond_t *cv, clockid_t clock);

/* Sleeps `seconds` in slices of at most 50 ms.  KM_ECANCELED as soon as *cancel (may be NULL)
 * is non-zero (also before sleeping at all), KM_OK otherwise. */
km_status km_clock_sleep(double seconds, const atomic_int *cancel);

/* Writes t (UTC) as RFC 3339 with frac fractional digits (0, 3 = milliseconds, 6 =
 * microseconds; other values count as 0) into buf of size n (>= KM_CLOCK_TEXT_MAX for every
 * form): "2026-11-26T09:56:52Z", "2026-11-26T09:56:52.123Z".  Always NUL-terminated when n > 0
 * ("" when t cannot be represented).  Returns buf. */
const char *km_clock_format(struct timespec t, int frac, char *buf, size_t n);

/* km_clock_format of t seconds (no fraction).  Returns buf. */
const char *km_clock_format_s(time_t t, char *buf, size_t n);

/* Now, as km_clock_format_s.  Returns buf. */
const char *km_clock_now_text(char *buf, size_t n);

/* Parses an RFC 3339 time: "YYYY-MM-DDTHH:MM:SS" with an optional fraction (ignored) and a zone
 * "Z" or "+HH:MM"/"-HH:MM" ('t', 'z' and a space for 'T' accepted); nothing may follow.
 * KM_EPARSE (out untouched) when s is NULL or anything else. */
km_status km_clock_parse(const char *s, time_t *out);

#endif
