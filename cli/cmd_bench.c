/* federate bench: timed measurements (benchmarks are not tests).
 *   bench train: local training steps on MNIST-shaped random data. */
#include <stdlib.h>
#include <string.h>
#include "args.h"
#include "common.h"

static const char *const norms[] = {"batch", "group", NULL};

static int bench_train(int argc, char **argv) {
    const char *model_name = "cnn", *hidden = NULL, *norm = "batch";
    int batch = 10, threads = 1, steps = 300, profile = 0, dp = 0, im2col = 0, unfused = 0;
    double clip = 1.0, noise_mult = 1.0;
    const arg_spec specs[] = {
        {"model", ARG_STRING, &model_name, "model from the zoo (default cnn)", NO_RANGE, NULL},
        {"hidden", ARG_STRING, &hidden, "mlp hidden sizes", NO_RANGE, NULL},
        {"norm", ARG_STRING, &norm, "resnet normalization", NO_RANGE, norms},
        {"batch-size", ARG_INT, &batch, "examples per step (default 10)", 1, 1 << 16, NULL},
        {"threads", ARG_INT, &threads, "threads splitting each batch (default 1)", 1, 64, NULL},
        {"steps", ARG_INT, &steps, "timed steps (default 300)", 1, 1 << 30, NULL},
        {"profile", ARG_FLAG, &profile, "print time per layer", NO_RANGE, NULL},
        {"reference", ARG_FLAG, &im2col, "the reference kernels (im2col convolutions, BLAS linear layers; kernels: reference)", NO_RANGE,
         NULL},
        {"unfused", ARG_FLAG, &unfused, "write every gradient, then step (not fed_model_sgd_step)", NO_RANGE, NULL},
        {"dp", ARG_FLAG, &dp, "DP-SGD steps: per-example clipping and Gaussian noise", NO_RANGE, NULL},
        {"clip", ARG_FLOAT, &clip, "DP-SGD per-example clip norm (default 1)", 1e-9, 1e9,
         NULL},
        {"noise-multiplier", ARG_FLOAT, &noise_mult, "DP-SGD noise multiplier (default 1)", 0, 1e6, NULL},
        ARG_END,
    };
    int rc = args_parse("bench train", "[FLAGS]", specs, argc, argv, 3, NULL, 0, NULL);
    if (rc) return rc > 0 ? 0 : 2;
    int resnet = strcmp(model_name, "resnet") == 0;
    int c = resnet ? 3 : 1, hw = resnet ? 32 : 28;
    fed_model *m = NULL;
    if (cli_model_for("bench train", model_name, c, hw, hw, 10, hidden, norm, &m)) return 1;
    fed_pool *pool = NULL;
    fed_optim *opt = NULL;
    int status = 1;
    size_t ex = (size_t)c * hw * hw;
    float *x = malloc((size_t)batch * ex * sizeof(float));
    int32_t *y = malloc((size_t)batch * sizeof(int32_t));
    if (!x || !y) { fprintf(stderr, "federate bench train: out of memory\n"); goto out; }
    fed_rng r;
    fed_rng_init(&r, 1, 0, 0, FED_RNG_USER);
    fed_rng_fill_normal(&r, x, (size_t)batch * ex, 0, 1);
    for (int i = 0; i < batch; i++) y[i] = (int32_t)fed_rng_below(&r, 10);
    if ((rc = fed_pool_new(&pool, threads))) { cli_fail("bench train", "cannot start threads", rc); goto out; }
    fed_model_set_pool(m, threads > 1 ? pool : NULL);
    if (im2col) fed_model_set_fast_kernels(m, 0);
    fed_optim_cfg oc;
    fed_optim_cfg_default(&oc, FED_OPTIM_SGD);
    if ((rc = fed_optim_new(&opt, &oc, fed_model_num_params(m)))) { cli_fail("bench train", "optimizer", rc); goto out; }
    fed_model_set_training(m, 1);
    fed_dp_noise noise;
    fed_dp_noise_init(&noise, FED_DP_NOISE_SEEDED, 1, 0, 0);
    /* a step = forward, backward and an SGD update, as in a client's local training */
    int warm = steps / 10 + 5;
    double t0 = 0;
    for (int i = 0; i < warm + steps; i++) {
        if (i == warm) {
            if (profile) fed_model_profile(m, 1);
            t0 = cli_now();
        }
        float loss;
        if (dp) {
            /* DP-SGD's step: clipped per-example gradients, noise, mean over the batch */
            if ((rc = fed_model_clipped_grad_sum(m, x, y, batch, (float)clip, &loss, NULL, NULL)) ||
                (rc = fed_dp_gaussian(&noise, fed_model_grads(m), fed_model_num_params(m), noise_mult * clip))) {
                cli_fail("bench train", "DP-SGD step", rc);
                goto out;
            }
            fed_vec_scale(fed_model_grads(m), 1.0f / (float)batch, fed_model_num_params(m));
            fed_optim_step_pool(opt, fed_model_params(m), fed_model_grads(m), 0.01f, fed_model_pool(m));
        } else if (unfused) {
            if ((rc = fed_model_loss_grad(m, x, y, batch, &loss, NULL))) {
                cli_fail("bench train", "step", rc);
                goto out;
            }
            fed_optim_step_pool(opt, fed_model_params(m), fed_model_grads(m), 0.01f, fed_model_pool(m));
        } else if ((rc = fed_model_sgd_step(m, x, y, batch, 0.01f, &loss, NULL))) {
            /* plain SGD as fed_train runs it: the linear layers step inside backward */
            cli_fail("bench train", "step", rc);
            goto out;
        }
    }
    double dt = cli_now() - t0;
    double sps = (double)steps * batch / dt;
    printf("model: %s\nbatch_size: %d\nthreads: %d\nsteps: %d\n", model_name, batch, threads, steps);
    if (dp) printf("dp_sgd: clip %g, noise_multiplier %g\n", clip, noise_mult);
    printf("samples_per_s: %.0f\n", sps);
    printf("gflops: %.1f\n", sps * fed_model_train_flops(m) / 1e9);
    if (profile) fed_model_profile_print(m, stdout, steps);
    status = 0;
out:
    free(x);
    free(y);
    fed_optim_free(opt);
    fed_model_free(m);
    fed_pool_free(pool);
    return status;
}

/* bench aggregate: FedAvg's aggregate_fit over K client updates of a model's
 * size, i.e. the weighted average the server computes every round. */
static int bench_aggregate(int argc, char **argv) {
    const char *model_name = "cnn";
    int clients = 100, reps = 5;
    const arg_spec specs[] = {
        {"model", ARG_STRING, &model_name, "model whose size the updates have (default cnn)", NO_RANGE, NULL},
        {"clients", ARG_INT, &clients, "updates averaged (default 100)", 1, 100000, NULL},
        {"reps", ARG_INT, &reps, "timed repetitions, best reported (default 5)", 1, 1000, NULL},
        ARG_END,
    };
    int rc = args_parse("bench aggregate", "[FLAGS]", specs, argc, argv, 3, NULL, 0, NULL);
    if (rc) return rc > 0 ? 0 : 2;
    int resnet = strcmp(model_name, "resnet") == 0;
    fed_model *m = NULL;
    if (cli_model_for("bench aggregate", model_name, resnet ? 3 : 1, resnet ? 32 : 28, resnet ? 32 : 28, 10, NULL, NULL, &m))
        return 1;
    size_t n = fed_model_num_params(m);
    fed_model_free(m);
    float *updates = malloc((size_t)clients * n * sizeof(float));
    float *global = calloc(n, sizeof(float));
    fed_client_res *res = calloc((size_t)clients, sizeof *res);
    fed_strategy *s = NULL;
    int status = 1;
    if (!updates || !global || !res) { fprintf(stderr, "federate bench aggregate: out of memory\n"); goto out; }
    fed_rng r;
    fed_rng_init(&r, 1, 0, 0, FED_RNG_USER);
    fed_rng_fill_uniform(&r, updates, (size_t)clients * n, -1e-3f, 1e-3f);
    for (int i = 0; i < clients; i++) {
        res[i].client = i;
        res[i].delta = updates + (size_t)i * n;
        res[i].num_examples = 500 + i;
    }
    if ((rc = fed_strategy_create(&s, "fedavg", NULL, n))) { cli_fail("bench aggregate", "strategy", rc); goto out; }
    double best = 1e30;
    for (int k = 0; k < reps; k++) {
        double t0 = cli_now();
        if ((rc = s->aggregate_fit(s, 1, res, clients, global))) { cli_fail("bench aggregate", "aggregate", rc); goto out; }
        double dt = cli_now() - t0;
        if (dt < best) best = dt;
    }
    double bytes = (double)clients * n * sizeof(float);
    printf("model: %s\nclients: %d\nfloats_per_update: %zu\n", model_name, clients, n);
    printf("ms: %.1f\n", best * 1e3);
    printf("gb_per_s: %.2f\n", bytes / best / 1e9);
    status = 0;
out:
    fed_strategy_free(s);
    free(updates);
    free(global);
    free(res);
    return status;
}

int cmd_bench(int argc, char **argv) {
    if (argc < 3 || strcmp(argv[2], "--help") == 0) {
        printf("usage: federate bench WHAT [FLAGS]\n\n"
               "  train      local training steps on MNIST-shaped data\n"
               "  aggregate  FedAvg's weighted average of client updates\n"
               "  compress   encode/decode speed, ratio and error of an update codec\n"
               "  secagg     one secure aggregation round (client/server cost, bytes)\n"
               "  coordinator  load-test a coordinator: N signed clients, exactly-once check, CPU per update\n"
               "  train --dp DP-SGD steps (per-example clipping and noise)\n");
        return argc < 3 ? 2 : 0;
    }
    if (strcmp(argv[2], "train") == 0) return bench_train(argc, argv);
    if (strcmp(argv[2], "aggregate") == 0) return bench_aggregate(argc, argv);
    if (strcmp(argv[2], "compress") == 0) return cmd_bench_compress(argc, argv);
    if (strcmp(argv[2], "secagg") == 0) return cmd_bench_secagg(argc, argv);
    if (strcmp(argv[2], "coordinator") == 0) return cmd_bench_coordinator(argc, argv);
    fprintf(stderr, "federate bench: unknown benchmark '%s' (known: train, aggregate, compress, secagg, coordinator)\n", argv[2]);
    return 2;
}
