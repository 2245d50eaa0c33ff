/* federate: privacy-preserving federated learning in C. Includes every module. */
#ifndef FEDERATE_H
#define FEDERATE_H

#define FEDERATE_VERSION "0.1.0"

#include "federate/error.h"
#include "federate/rng.h"
#include "federate/vec.h"
#include "federate/pool.h"
#include "federate/model.h"
#include "federate/loss.h"
#include "federate/optim.h"
#include "federate/schedule.h"
#include "federate/train.h"
#include "federate/data.h"
#include "federate/safetensors.h"
#include "federate/partition.h"
#include "federate/config.h"
#include "federate/store.h"
#include "federate/strategy.h"
#include "federate/fl.h"
#include "federate/rdp.h"
#include "federate/crypto.h"
#include "federate/dp.h"
#include "federate/compress.h"
#include "federate/secagg.h"
#include "federate/report.h"

#endif
