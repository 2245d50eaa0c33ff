/* federate train: centralized training, the baseline every federated result is
 * compared with. Prints per-epoch train loss, test loss, test accuracy, samples/s. */
#include <stdlib.h>
#include <string.h>
#include "args.h"
#include "common.h"

static const char *const datasets[] = {"mnist", "fashion-mnist", "cifar10", NULL};
static const char *const optimizers[] = {"sgd", "adam", "adagrad", NULL};
static const char *const schedules[] = {"constant", "step", "cosine", NULL};
static const char *const norms[] = {"batch", "group", NULL};
static const char *const kernel_sets[] = {"fast", "reference", NULL};

typedef struct progress_ctx { cli_progress bar; int epoch, epochs; } progress_ctx;

static void on_step(void *vctx, long step, long total, double loss) {
    progress_ctx *p = vctx;
    if (step % 10 && step != total) return;
    char extra[64];
    snprintf(extra, sizeof extra, "epoch %d/%d loss %.4f", p->epoch, p->epochs, loss);
    cli_progress_update(&p->bar, step, total, extra);
}

int cmd_train(int argc, char **argv) {
    const char *dataset = "mnist", *model_name = "cnn", *opt_name = "sgd", *sched_name = "constant";
    const char *save = NULL, *data_dir = NULL, *hidden = NULL, *norm = "batch", *kernels = "fast";
    int epochs = 1, batch = 64, threads = 1, nesterov = 0, crop = 0, flip = 0, step_size = 1, limit = 0;
    double lr = 0.01, momentum = 0.0, wd = 0.0, gamma = 0.1, rotate = 0.0;
    uint64_t seed = 0;
    const arg_spec specs[] = {
        {"dataset", ARG_STRING, &dataset, "data set", NO_RANGE, datasets},
        {"data-dir", ARG_STRING, &data_dir, "data directory (default $FEDERATE_DATA or ~/.cache/federate)", NO_RANGE, NULL},
        {"model", ARG_STRING, &model_name, "model from the zoo: mlp, cnn, cnn-bn, resnet", NO_RANGE, NULL},
        {"hidden", ARG_STRING, &hidden, "mlp hidden sizes, e.g. 200,200", NO_RANGE, NULL},
        {"norm", ARG_STRING, &norm, "resnet normalization", NO_RANGE, norms},
        {"epochs", ARG_INT, &epochs, "passes over the training set (default 1)", 1, 100000, NULL},
        {"batch-size", ARG_INT, &batch, "examples per step (default 64)", 1, 1 << 20, NULL},
        {"lr", ARG_FLOAT, &lr, "learning rate (default 0.01)", 0, 1e6, NULL},
        {"optimizer", ARG_STRING, &opt_name, "optimizer (default sgd)", NO_RANGE, optimizers},
        {"momentum", ARG_FLOAT, &momentum, "SGD momentum (default 0)", 0, 1, NULL},
        {"nesterov", ARG_FLAG, &nesterov, "Nesterov momentum", NO_RANGE, NULL},
        {"weight-decay", ARG_FLOAT, &wd, "L2 weight decay (default 0)", 0, 1e6, NULL},
        {"schedule", ARG_STRING, &sched_name, "learning-rate schedule (default constant)", NO_RANGE, schedules},
        {"step-size", ARG_INT, &step_size, "step schedule: epochs between decays (default 1)", 1, 1 << 30, NULL},
        {"gamma", ARG_FLOAT, &gamma, "step schedule: decay factor (default 0.1)", 0, 1, NULL},
        {"augment-crop", ARG_INT, &crop, "random crop after padding by N pixels", 0, 64, NULL},
        {"augment-flip", ARG_FLAG, &flip, "random horizontal flips", NO_RANGE, NULL},
        {"augment-rotate", ARG_FLOAT, &rotate, "random rotation up to DEG degrees", 0, 180, NULL},
        {"limit", ARG_INT, &limit, "use only the first N training examples (quick checks)", 1, 1 << 30, NULL},
        {"threads", ARG_INT, &threads, "threads splitting each batch (default 1)", 1, 64, NULL},
        {"kernels", ARG_STRING, &kernels, "fast (default) or reference (earlier versions' kernels, as in a run "
         "config)", NO_RANGE, kernel_sets},
        {"seed", ARG_U64, &seed, "random seed (default 0)", NO_RANGE, NULL},
        {"save", ARG_STRING, &save, "write the trained weights to FILE.safetensors", NO_RANGE, NULL},
        ARG_END,
    };
    int rc = args_parse("train", "[FLAGS]", specs, argc, argv, 2, NULL, 0, NULL);
    if (rc) return rc > 0 ? 0 : 2;

    fed_dataset train = {0}, test = {0};
    if ((rc = fed_dataset_load(dataset, 1, data_dir, &train))) return cli_fail("train", "cannot load the training set", rc);
    if ((rc = fed_dataset_load(dataset, 0, data_dir, &test))) {
        fed_dataset_free(&train);
        return cli_fail("train", "cannot load the test set", rc);
    }
    if (limit > 0 && limit < train.n) train.n = limit;   /* the first N; memory stays owned */
    fed_model *m = NULL;
    fed_pool *pool = NULL;
    fed_optim *opt = NULL;
    int status = 1;
    if (cli_model_for("train", model_name, train.c, train.h, train.w, train.num_classes, hidden, norm, &m)) goto out;
    fed_model_set_fast_kernels(m, strcmp(kernels, "reference") != 0);
    fed_model_init_params(m, seed);
    if ((rc = fed_pool_new(&pool, threads))) { cli_fail("train", "cannot start threads", rc); goto out; }
    fed_model_set_pool(m, threads > 1 ? pool : NULL);
    int kind;
    if ((rc = fed_optim_kind_from_name(opt_name, &kind))) { cli_fail("train", "bad --optimizer", rc); goto out; }
    fed_optim_cfg oc;
    fed_optim_cfg_default(&oc, kind);
    if (kind == FED_OPTIM_SGD) { oc.momentum = (float)momentum; oc.nesterov = nesterov; }
    oc.weight_decay = (float)wd;
    if ((rc = fed_optim_new(&opt, &oc, fed_model_num_params(m)))) { cli_fail("train", "bad optimizer settings", rc); goto out; }

    long steps_per_epoch = (train.n + batch - 1) / batch;
    fed_lr_schedule sched = {0};
    sched.base_lr = (float)lr;
    sched.gamma = (float)gamma;
    sched.step_size = (int)(step_size * steps_per_epoch);
    sched.total_steps = (int)(epochs * steps_per_epoch);
    if ((rc = fed_lr_kind_from_name(sched_name, &sched.kind))) { cli_fail("train", "bad --schedule", rc); goto out; }
    float black[3];   /* pad with black, as torchvision pads before it normalizes */
    fed_augment aug = {crop, flip, (float)rotate, fed_dataset_black(dataset, black, 3) == 0 ? black : NULL};
    int augmenting = crop || flip || rotate > 0;

    printf("model %s (%zu parameters), %s: %d training / %d test examples, %d thread%s\n", model_name,
           fed_model_num_params(m), dataset, train.n, test.n, threads, threads > 1 ? "s" : "");
    double acc = 0, test_loss = 0;
    for (int e = 1; e <= epochs; e++) {
        progress_ctx pc = {.epoch = e, .epochs = epochs};
        cli_progress_init(&pc.bar, "train");
        fed_train_opts to;
        fed_train_opts_default(&to);
        to.epochs = 1;
        to.batch_size = batch;
        to.schedule = &sched;
        to.schedule_offset = (e - 1) * steps_per_epoch;
        to.augment = augmenting ? &aug : NULL;
        to.seed = seed;
        to.round = (uint64_t)e;
        to.unfused = strcmp(kernels, "reference") == 0;
        to.progress = on_step;
        to.progress_ctx = &pc;
        fed_train_stats st;
        double t0 = cli_now();
        rc = fed_train(m, opt, &train, NULL, 0, &to, &st);
        double dt = cli_now() - t0;
        cli_progress_clear(&pc.bar);
        if (rc) { cli_fail("train", "training failed", rc); goto out; }
        if ((rc = fed_model_evaluate(m, &test, 500, &test_loss, &acc, NULL))) { cli_fail("train", "evaluation failed", rc); goto out; }
        printf("epoch %d/%d  train_loss %.4f  test_loss %.4f  test_accuracy %.2f%%  samples_per_s %.0f\n", e, epochs,
               st.loss, test_loss, 100 * acc, st.examples / dt);
        fflush(stdout);
    }
    printf("test_accuracy: %.2f\n", 100 * acc);
    if (save) {
        if ((rc = fed_model_save(m, save))) { cli_fail("train", "cannot save the model", rc); goto out; }
        printf("saved: %s\n", save);
    }
    status = 0;
out:
    fed_optim_free(opt);
    fed_model_free(m);
    fed_pool_free(pool);
    fed_dataset_free(&train);
    fed_dataset_free(&test);
    return status;
}
