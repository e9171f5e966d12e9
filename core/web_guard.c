/* web_guard.c -- closes connections whose client is too slow to send its
 * request head, and makes room for new clients (see web_guard.h). */
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

#include "web_guard.h"

static double monotonic(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int web_guard_init(web_guard *g, int keep, double header_timeout, double idle_timeout) {
  if (pthread_mutex_init(&g->lock, NULL) != 0) return -1;
  g->waiting.prev = g->waiting.next = &g->waiting;
  g->open = 0;
  g->keep = keep;
  g->evicted = 0;
  g->header_timeout = header_timeout;
  g->idle_timeout = idle_timeout;
  return 0;
}

/* libmicrohttpd has notified CLOSED for every connection by the time its
 * daemon stops, so the list is empty here. */
void web_guard_free(web_guard *g) {
  pthread_mutex_destroy(&g->lock);
}

/* ---- the waiting list (the caller holds the lock) ---------------------------- */

static void unlink_conn(guard_conn *gc) {
  if (gc->next == NULL) return;
  gc->prev->next = gc->next;
  gc->next->prev = gc->prev;
  gc->prev = gc->next = NULL;
}

static void append(web_guard *g, guard_conn *gc, double deadline) {
  unlink_conn(gc);
  gc->deadline = deadline;
  gc->prev = g->waiting.prev;
  gc->next = &g->waiting;
  g->waiting.prev->next = gc;
  g->waiting.prev = gc;
}

/* Ends the stream of a waiting connection; its thread then closes it. It
 * leaves the list, so it is shut down once. */
static void close_waiting(guard_conn *gc) {
  unlink_conn(gc);
  shutdown(gc->fd, SHUT_RDWR);
}

/* ---- libmicrohttpd's events ---------------------------------------------------- */

static guard_conn *conn_of(struct MHD_Connection *c) {
  const union MHD_ConnectionInfo *info =
    MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  return info != NULL ? info->socket_context : NULL;
}

static void started(web_guard *g, struct MHD_Connection *c, void **socket_context) {
  const union MHD_ConnectionInfo *info =
    MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
  guard_conn *gc = calloc(1, sizeof *gc);
  if (gc == NULL || info == NULL) { /* unguarded, but served: the idle timeout still applies */
    free(gc);
    return;
  }
  gc->fd = info->connect_fd;
  *socket_context = gc;
  pthread_mutex_lock(&g->lock);
  g->open++;
  append(g, gc, monotonic() + g->header_timeout);
  if (g->open > g->keep && g->waiting.next != &g->waiting) {
    close_waiting(g->waiting.next); /* the oldest, which may be this one if all others are busy */
    g->evicted++;
  }
  pthread_mutex_unlock(&g->lock);
}

static void closed(web_guard *g, void **socket_context) {
  guard_conn *gc = *socket_context;
  if (gc == NULL) return;
  pthread_mutex_lock(&g->lock);
  unlink_conn(gc);
  g->open--;
  pthread_mutex_unlock(&g->lock);
  free(gc);
  *socket_context = NULL;
}

void web_guard_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                      enum MHD_ConnectionNotificationCode code) {
  if (code == MHD_CONNECTION_NOTIFY_STARTED) started(cls, c, socket_context);
  else closed(cls, socket_context);
}

void web_guard_head_done(web_guard *g, struct MHD_Connection *c) {
  guard_conn *gc = conn_of(c);
  if (gc == NULL) return;
  pthread_mutex_lock(&g->lock);
  unlink_conn(gc);
  pthread_mutex_unlock(&g->lock);
}

void web_guard_body_wait(web_guard *g, struct MHD_Connection *c, double seconds) {
  guard_conn *gc = conn_of(c);
  if (gc == NULL) return;
  pthread_mutex_lock(&g->lock);
  append(g, gc, monotonic() + seconds);
  pthread_mutex_unlock(&g->lock);
}

void web_guard_answered(web_guard *g, struct MHD_Connection *c) {
  guard_conn *gc = conn_of(c);
  if (gc == NULL) return;
  pthread_mutex_lock(&g->lock);
  append(g, gc, monotonic() + g->idle_timeout + g->header_timeout);
  pthread_mutex_unlock(&g->lock);
}

void web_guard_sweep(web_guard *g, double now) {
  long evicted, timed_out = 0;
  pthread_mutex_lock(&g->lock);
  guard_conn *gc = g->waiting.next;
  while (gc != &g->waiting) {
    guard_conn *next = gc->next;
    if (now >= gc->deadline) {
      close_waiting(gc);
      timed_out++;
    }
    gc = next;
  }
  evicted = g->evicted;
  g->evicted = 0;
  pthread_mutex_unlock(&g->lock);
  if (timed_out > 0 || evicted > 0)
    printf("at=warn msg=\"slow clients closed\" header_timeout=%ld evicted=%ld\n", timed_out,
           evicted);
}
