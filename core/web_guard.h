/* web_guard.h -- the web server's defence against slow clients.
 *
 * libmicrohttpd's only clock on a connection is its idle timeout, which any
 * byte resets: a client sending a header line every few seconds holds a
 * connection for ever, and enough of them fill the connection limit. The guard
 * keeps, under one lock, the connections that wait on their client (for the
 * head of their first request, for the body of a request, or for the head of
 * the next one on a kept-alive connection), oldest first, and
 * - closes each that has not sent its whole head by its deadline
 *   (header_timeout after the accept; after an answer, idle_timeout to start
 *   the next request plus header_timeout to send its head: nginx's
 *   keepalive_timeout then client_header_timeout; a body has its own
 *   deadline, nginx's client_body_timeout);
 * - past `keep` open connections, closes the oldest waiting one, as nginx
 *   reuses its idle connections, so a new client always finds room.
 * Closing is shutdown(2) of the socket: the connection's own thread sees the
 * end of the stream and closes it the usual way. The guard holds a socket only
 * between libmicrohttpd's STARTED and CLOSED notifications, and CLOSED comes
 * before the socket is closed, so a socket shut down under the lock is never a
 * reused descriptor. */
#ifndef MC_WEB_GUARD_H
#define MC_WEB_GUARD_H

#include <pthread.h>

#include <microhttpd.h>

typedef struct guard_conn {
  struct guard_conn *prev, *next; /* in the waiting list; both NULL when not in it */
  int fd;
  double deadline; /* monotonic seconds */
} guard_conn;

typedef struct web_guard {
  pthread_mutex_t lock;
  guard_conn waiting; /* sentinel of the waiting list, oldest first */
  int open, keep;     /* open connections; how many are kept before evicting */
  long evicted;       /* since the last sweep, which logs it */
  double header_timeout, idle_timeout;
} web_guard;

int web_guard_init(web_guard *g, int keep, double header_timeout, double idle_timeout); /* 0 | -1 */
void web_guard_free(web_guard *g);

/* An MHD_NotifyConnectionCallback (cls: the guard); the socket context is the
 * connection's guard_conn. */
void web_guard_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                      enum MHD_ConnectionNotificationCode code);

/* The connection's head arrived (the first access callback of a request), or
 * its body did: it no longer waits on its client. */
void web_guard_head_done(web_guard *g, struct MHD_Connection *c);

/* The connection's head arrived and its body is to follow within `seconds`:
 * until web_guard_head_done, it waits on its client again (closed at the
 * deadline, evictable), so clients trickling bodies cannot fill the limit. */
void web_guard_body_wait(web_guard *g, struct MHD_Connection *c, double seconds);

/* The connection's request is over; it waits for the next one. */
void web_guard_answered(web_guard *g, struct MHD_Connection *c);

/* Closes the waiting connections past their deadline; from a timer. */
void web_guard_sweep(web_guard *g, double now);

#endif
