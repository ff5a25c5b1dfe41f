/*
 * syslogsink.h — anomaly events to the local syslog daemon.
 *
 * tokenwatch speaks the local syslog protocol itself instead of calling
 * syslog(3): one AF_UNIX SOCK_DGRAM datagram per event to /dev/log (or the
 * configured socket), formatted as glibc's syslog(3) formats it,
 *   "<PRI>Mmm dd hh:mm:ss IDENT[PID]: MESSAGE"
 * with MESSAGE the event's JSON line without its '\n'. Doing it here gives
 * three things syslog(3) cannot: a socket path other than /dev/log (the
 * integration test runs its own receiver through the very same code), a
 * non-blocking socket (a stalled syslog daemon costs dropped, counted
 * messages, never a stalled analysis loop: glibc blocks on a full /dev/log
 * queue), and no process-global openlog() state to swap on SIGHUP.
 *
 * PRI = facility | severity, the severity from the event's "severity":
 * critical -> LOG_CRIT, high -> LOG_ERR, medium -> LOG_WARNING,
 * low -> LOG_NOTICE. Events below severity_min are not sent (not a drop).
 *
 * Flow: tw_syslog_append() formats and queues (at most max_per_round per
 * round; beyond that a message is dropped and counted with reason "limit");
 * tw_syslog_flush() sends the queue, once per read round. A send that fails
 * (no receiver, receiver queue full) drops that message, counted with reason
 * "error"; a refused or missing socket is reconnected once per flush, so a
 * restarted syslog daemon is picked up without a SIGHUP.
 *
 * Threading: a sink belongs to one thread (the analysis loop). The metric
 * cells it is given are atomic and may be read by any thread.
 */
#ifndef TW_SYSLOGSINK_H
#define TW_SYSLOGSINK_H

#include "common.h"
#include "metrics.h"

#include <stdbool.h>
#include <stddef.h>

#define TW_SYSLOG_DEFAULT_SOCKET "/dev/log"
#define TW_SYSLOG_PER_ROUND_DEFAULT 1000

/* The "syslog" section of the config. Strings owned by the config. */
typedef struct tw_syslog_conf {
    bool enabled;               /* false also when the section is absent */
    char *ident;
    int facility;               /* a LOG_* facility code (already shifted) */
    int severity_min;           /* tw_severity_t: events below it are not sent */
    char *socket;               /* resolved path of the datagram socket */
    unsigned max_per_round;
} tw_syslog_conf_t;

/* "authpriv" -> LOG_AUTHPRIV; -1 when the name is not one tokenwatch takes
 * (auth, authpriv, daemon, user, local0..local7). */
int tw_syslog_facility_parse(const char *name);
/* The name of a facility code tw_syslog_facility_parse() returned; "?" for
 * any other. */
const char *tw_syslog_facility_name(int code);
/* "low" .. "critical" -> tw_severity_t; -1 when unknown. */
int tw_syslog_severity_parse(const char *name);
/* True when a and b would produce the same sink (a reload keeps it). */
bool tw_syslog_conf_equal(const tw_syslog_conf_t *a, const tw_syslog_conf_t *b);
void tw_syslog_conf_free(tw_syslog_conf_t *c);   /* frees the strings only */

typedef struct tw_syslog tw_syslog_t;

/* Metric cells the sink adds to (borrowed; each may be NULL). */
typedef struct tw_syslog_cells {
    tw_cell_t *sent;
    tw_cell_t *dropped_limit;
    tw_cell_t *dropped_error;
} tw_syslog_cells_t;

/* Creates a sink for an enabled conf (copied). Connecting is attempted at
 * once; when it fails the sink still exists and retries at each flush, so
 * start-up does not depend on the syslog daemon. Never NULL. */
tw_syslog_t *tw_syslog_new(const tw_syslog_conf_t *conf, const tw_syslog_cells_t *cells);
void tw_syslog_free(tw_syslog_t *s);   /* flushes; NULL-safe */

/* Queues one event (a JSON object, optionally ending in '\n'). */
void tw_syslog_append(tw_syslog_t *s, const char *line, size_t len);
/* Sends the queue and starts a new round. Returns 0, or -1 (err filled:
 * why messages were dropped) when any send failed. */
int tw_syslog_flush(tw_syslog_t *s, tw_err_t *err);

#endif
