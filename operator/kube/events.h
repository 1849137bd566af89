/* events.h — core/v1 Event recorder with client-side aggregation (client-go's recorder).
 *
 * An Event goes to the involved object's namespace, or to "default" for a cluster-scoped object
 * (verified on 1.19), with involvedObject {apiVersion, kind, name, uid, resourceVersion} taken
 * from the object and source.component "kubemend".  An Event with the same object, type, reason
 * and message as one this recorder created before is not created again: its count and
 * lastTimestamp are PATCHed (merge patch) instead.  New Events are named
 * "<object>.<hex nanoseconds>" like client-go.
 *
 * Like client-go's EventCorrelator, per object, type and reason: from the 10th different
 * message within 10 minutes on, the Events become one "(combined from similar events): <latest
 * message>" Event whose count grows; and a token bucket (25, refilled one per 5 minutes; per
 * reason, so a flood of one reason never hides another) drops the rest — the log still has
 * every Event.
 *
 * Recording never blocks nor fails the caller (client-go's recorder): the Event is logged at
 * once and queued; a sender thread writes the queue in order on the recorder's own client.  A
 * full queue (1,000 Events) drops the newest, counted (km_events_dropped) and logged once.  API
 * errors are logged and forgotten; a 403 (a missing RBAC rule) is logged once per recorder at
 * warning level, then at debug level so it does not flood the log.  A recorder without a client
 * (or a NULL recorder: run --once, which has no object in the cluster) writes the events to the
 * log only.  Thread-safe. */
#ifndef KM_EVENTS_H
#define KM_EVENTS_H

#include <cjson/cJSON.h>

#include "operator/base/err.h"
#include "operator/kube/kube.h"

typedef struct km_events km_events;

/* Creates a recorder.  kube may be NULL (log only); otherwise it is cloned (the recorder owns
 * its clone).  component NULL = "kubemend".  Caller frees *out with km_events_free.  On failure
 * (KM_ENOMEM, or the clone's error) *out is untouched. */
km_status km_events_new(km_kube *kube, const char *component, km_events **out, km_err *err);

/* Waits (up to 5 s) for the queued Events to be written, stops the sender and frees the
 * recorder; Events still queued then are lost (logged).  Accepts NULL. */
void km_events_free(km_events *ev);

/* Waits up to timeout_s for every queued Event to be written (or to fail).  1 when the queue is
 * empty and nothing is being sent, 0 on timeout.  A NULL or log-only recorder: 1 at once. */
int km_events_flush(km_events *ev, double timeout_s);

/* Records an Event about obj (borrowed): apiVersion, kind, metadata.name and metadata.uid are
 * needed (list items carry no apiVersion/kind: pass a reference object); without them, or
 * without a client, the Event is only logged.  type "Normal"/"Warning", reason CamelCase.
 * Returns at once (the Event is queued; see the file comment).  Never fails visibly. */
void km_events_record(km_events *ev, const cJSON *obj, const char *type, const char *reason,
                      const char *message);

/* Number of Events created / aggregated (patched) so far (for tests and metrics). */
unsigned long km_events_created(km_events *ev);
unsigned long km_events_aggregated(km_events *ev);

/* Number of Events dropped: the queue was full or the spam filter's budget spent (for tests and
 * metrics). */
unsigned long km_events_dropped(km_events *ev);

#endif
