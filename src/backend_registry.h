/* backend_registry.h - the list of compiled-in backends (the only mutable global besides errors). */
#ifndef FM_BACKEND_REGISTRY_H
#define FM_BACKEND_REGISTRY_H

#include "backend.h"
#include "falconmamba.h"

/* The ops table for kind (AUTO picks the best available), or an FM_ERR_BACKEND error. */
fm_status fm_backend_find(fm_backend_kind kind, const fm_backend_ops **out);

/* The host callbacks every backend is initialised with. */
const fm_backend_host *fm_backend_host_callbacks(void);

#endif
