/* Simulated systems: every client is a device with a compute speed, link
 * bandwidths, a latency, an availability trace and a failure probability, and
 * time is a virtual clock (src/sim/clock.c). The synchronous driver asks it
 * who is online, how much work fits in a round's deadline and how long the
 * round took; the asynchronous driver (FedBuff, src/fl/async_driver.c) runs
 * its events on it. All draws come from fed_rng streams keyed by the run seed. */
#ifndef FEDERATE_SIM_H
#define FEDERATE_SIM_H
#include <stddef.h>
#include <stdint.h>
#include "federate/config.h"
#include "federate/fl.h"

typedef struct fed_device {
    double speed;          /* training samples per second */
    double up, down;       /* link bandwidth, bytes per second */
    double latency;        /* seconds, paid once each way */
    double availability;   /* fraction of each cycle online, (0, 1] */
    double phase;          /* where in its cycle the device starts, [0, 1) */
    double failure;        /* chance it fails during a task, [0, 1) */
} fed_device;

/* Draws num_clients profiles from cfg's device_profiles distribution (uniform
 * or lognormal; "none" gives everyone the lognormal medians), or reads them
 * from cfg->device_profiles_file for "file". */
int fed_device_profiles(const fed_config *cfg, int num_clients, fed_device *dev);
/* Reads a CSV: client,speed,up,down,latency[,availability[,failure]] per line,
 * one row for every client 0..num_clients-1; '#' comments and a header line
 * starting with "client" allowed. Errors name the file, line and column. */
int fed_device_profiles_load(const char *path, int num_clients, fed_device *dev);

/* 1 if the device is online at simulated time t (periodic on/off trace). */
int fed_device_online(const fed_device *d, double period_s, double t);
/* The earliest time >= t at which the device is online. */
double fed_device_next_online(const fed_device *d, double period_s, double t);
/* Training samples a client with n examples processes in `steps` local steps
 * of batch `batch` (epochs are passes over n; the last batch of one is short). */
double fed_task_samples(long n, int batch, long steps);
/* Local steps of a task: max_steps if set, else epochs x batches per epoch. */
long fed_task_steps(long n, int batch, int epochs, long max_steps);
/* Simulated seconds: download + latency + compute + upload + latency. */
double fed_device_task_time(const fed_device *d, double down_bytes, double samples, double up_bytes);
/* Most local steps whose compute fits in budget_s (after the transfers), 0 if none. */
long fed_device_steps_within(const fed_device *d, double budget_s, double down_bytes, double up_bytes, long n,
                             int batch);

/* The simulated system of a run. Always created; enabled = 0 when
 * device_profiles is none (then rounds have no simulated time). */
typedef struct fed_sysim {
    int enabled;
    int num_clients;
    fed_device *dev;
    double period;         /* availability cycle, s */
    double now;            /* the virtual clock, s */
    double deadline;       /* round_deadline_s (0 = none) */
    double over;           /* over_selection */
    double failure;        /* failure_probability (for profiles that set none) */
    uint64_t seed;
    double model_bytes;    /* what a client downloads */
    double *speeds;        /* dev[i].speed, for the selector */
    /* per slot of the current round (capacity entries) */
    int cap;
    unsigned char *skip;   /* 1 failed, 2 no time for one step: dropped after collect */
    double *time;          /* the client's simulated time in the round */
    struct fed_avail *avail; /* availability_model (src/sim/clock.c): who is online when */
} fed_sysim;

/* Builds the devices and the availability model and wires the selector's
 * system inputs (speeds, oort and power-of-choice parameters). model_bytes:
 * the model plus buffers as sent. A bad availability_trace fails here with an
 * error naming file:line and what is wrong. */
int fed_sysim_new(fed_sysim **out, const fed_config *cfg, fed_selector *sel, int num_clients, double model_bytes);
void fed_sysim_free(fed_sysim *s);
/* Availability under the run's availability_model: always, periodic (the
 * device's availability and phase, fed_device_online), markov (two-state on/off
 * chain with exponential sojourns of means availability_mean_on_s / _off_s,
 * started in its stationary distribution) or trace (availability_trace, a CSV
 * client,start_s,end_s of online intervals [start, end), repeating with the
 * period of the largest end; a client with no row is always online). The
 * Markov chain of each client is drawn in order from its own stream (seed,
 * client) and cached, so answers depend on nothing but (seed, client, t):
 * not on thread count nor on query order. Not thread-safe (the cache): the
 * drivers ask from their own thread. t >= 0 simulated seconds (t < 0 reads as 0). */
int fed_sysim_online(fed_sysim *s, int client, double t);
/* The earliest time >= t at which the client is online (t itself if online). */
double fed_sysim_next_online(fed_sysim *s, int client, double t);
/* The earliest time >= t at which the client is offline (t itself if offline;
 * INFINITY if it never goes offline). */
double fed_sysim_next_offline(fed_sysim *s, int client, double t);

/* Clients per round after over-selection (room the driver allocates). */
int fed_sysim_capacity(const fed_sysim *s, int k);
/* Selects for round: only devices online at the round's start, k x (1 +
 * over_selection) of them (fewer if fewer are online; the clock waits for the
 * first device to come online if none is). *kout = how many, ascending ids. */
int fed_sysim_select(fed_sysim *s, fed_selector *sel, const fed_federation *fed, uint64_t seed, int round, int k,
                     int *out, int *kout);
/* Before broadcast: draws failures and, with a deadline, cuts each task's
 * max_steps to what fits (tasks that cannot do one step run one and are
 * dropped after collect). */
int fed_sysim_plan(fed_sysim *s, const fed_federation *fed, fed_task *tasks, int k);
/* After collect: drops failed and out-of-time clients, keeps the first
 * `target` to finish (over-selection; the rest become FED_RESULT_LATE), tells
 * the selector each client's loss and duration, and advances the clock by the
 * round's time (the slowest kept client), returned in *round_s (NAN when
 * disabled). */
int fed_sysim_finish(fed_sysim *s, fed_selector *sel, const fed_federation *fed, const fed_task *tasks,
                     fed_result *res, int k, int target, double *round_s);
/* Checkpoint words: the clock and the selector's memory. */
size_t fed_sysim_state_size(const fed_sysim *s, const fed_selector *sel);
void fed_sysim_state_get(const fed_sysim *s, const fed_selector *sel, int64_t *words);
int fed_sysim_state_set(fed_sysim *s, fed_selector *sel, const int64_t *words, size_t len);

/* FedBuff staleness weight s(tau) (Nguyen et al. 2022, sec. 3; the functions of
 * Xie et al. 2019): kind "constant" 1, "polynomial" (1 + tau)^-a, "hinge" 1 for
 * tau <= b else 1 / (a (tau - b) + 1). NAN for an unknown kind or tau < 0. */
double fed_staleness_weight(const char *kind, double a, double b, long tau);

/* The asynchronous driver (FedBuff); fed_run calls it for strategy fedbuff. */
int fed_run_async(const fed_config *cfg, const fed_run_opts *opts, fed_run_result *out);

#endif
