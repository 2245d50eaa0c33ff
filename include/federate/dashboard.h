/* The live dashboard: a small HTTP server (libmicrohttpd, plain HTTP, loopback
 * unless asked otherwise) with a web page that charts a run as its rounds
 * finish, pages for past runs from the experiment store, a form that starts a
 * simulation in a background thread, JSON under /api/ and Prometheus text at
 * /metrics. The page, its script and uPlot are embedded in the binary.
 * Usage and endpoints: docs/dashboard.md. */
#ifndef FEDERATE_DASHBOARD_H
#define FEDERATE_DASHBOARD_H
#include <stdint.h>
#include "federate/config.h"
#include "federate/fl.h"

typedef struct fed_dashboard fed_dashboard;

typedef struct fed_dashboard_opts {
    const char *listen;     /* HOST:PORT, an IP address or localhost; port 0 picks a free one */
    const char *store;      /* path of the experiment store (read per request; runs started from the page write to it) */
    int allow_public;       /* 1: a non-loopback address is allowed (otherwise FED_EINVAL) */
    int read_only;          /* 1: no starting or stopping runs through the API */
} fed_dashboard_opts;

/* Starts serving. Errors name the address (bad, in use, not loopback). */
int fed_dashboard_start(fed_dashboard **out, const fed_dashboard_opts *opts);
/* The bound port (useful with port 0). */
int fed_dashboard_port(const fed_dashboard *d);
/* Stops serving; stops a run started from the page and waits for it. NULL: no-op. */
void fed_dashboard_free(fed_dashboard *d);

/* A run driven by the caller (`federate run --dashboard`): announce it before
 * fed_run (resume_run: the run being resumed, or 0), feed it from fed_run_opts'
 * callbacks, and end it with fed_run's return code. POST /api/runs/ID/stop sets
 * *stop. While it runs, starting another from the page answers 409. */
void fed_dashboard_live_begin(fed_dashboard *d, const fed_config *cfg, int64_t resume_run, volatile int *stop);
void fed_dashboard_live_client(fed_dashboard *d, int round, int done, int total);
void fed_dashboard_live_round(fed_dashboard *d, const fed_config *cfg, const fed_round_report *r);
void fed_dashboard_live_end(fed_dashboard *d, int rc, const fed_run_result *res);
/* 1 if the live run was asked to stop through the page. */
int fed_dashboard_stop_requested(const fed_dashboard *d);

#endif
