/*
 * vmmdev_hgcm_plugin.h - the C ABI between the vmmdev-rs HGCM framework and service plugins.
 *
 * SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause
 *
 * A plugin is a shared library exporting exactly one symbol:
 *
 *     int32_t vmmdev_hgcm_plugin_load(const vmmdev_hgcm_host_api *host,
 *                                     const char *config,
 *                                     vmmdev_hgcm_plugin_table *table);
 *
 * The host calls it once, on the service's own thread. Every other callback of the plugin also
 * runs on that thread, one at a time, in the order the host sent the work. Only the host API
 * functions may be called from any thread.
 *
 * VERSIONING
 *   Both tables start with {size, abi_major, abi_minor} at fixed offsets in every version. A
 *   different major version is incompatible: the plugin returns VERR_VERSION_MISMATCH (-11) after
 *   writing its own version into table->abi_major/abi_minor. A newer minor version only appends
 *   fields; each side reads the other's table only up to the size it declares.
 *
 * LOADING
 *   The host zeroes the plugin table, sets size/abi_major/abi_minor to its own values and
 *   pre-fills max_clients, max_calls_per_client, legacy_category (0) and state_version (1). The
 *   plugin must not write beyond table->size as given by the host. It sets size and the version
 *   to the values it was built with, its name, instance and callbacks, and may change the limits,
 *   then returns VINF_SUCCESS (0) or a negative VirtualBox status to refuse. Required: name, call.
 *   Absent optional callbacks get defaults: connect accepts, disconnect succeeds, host_call
 *   answers VERR_NOT_SUPPORTED (-37), there is no state, notifications are ignored.
 *
 * MEMORY OWNERSHIP
 *   - The host API table and its ctx are owned by the host and valid from the load call until
 *     unload has returned. Never call the host API after unload: ctx is freed then, and a call
 *     is undefined behaviour (the Rust SDK turns such calls into VERR_INVALID_STATE). The host
 *     unloads every plugin when the framework shuts down, with calls possibly still held, so
 *     unload must stop the plugin's own threads and forget its held handles before returning.
 *   - config is owned by the host and valid only during the load call.
 *   - name and instance are owned by the plugin and must stay valid until unload has returned;
 *     the host copies the name at load.
 *   - The parameter array and every iovec array given to call() are owned by the host and stay
 *     valid until the plugin completes that call with host->complete(). Until then the plugin may
 *     write values and reported_len in place, from any thread. After complete() returns, none of
 *     it may be touched.
 *   - GUEST ACCESS: the memory the iovecs of a call() point to may be read or written only
 *     between host->begin_guest_access(ctx, call) returning VINF_SUCCESS and the matching
 *     host->end_guest_access(ctx, call). When the call is cancelled (by its caller, a client
 *     disconnect, a guest reset or a service failure), begin_guest_access returns VERR_CANCELLED
 *     (-70): touch nothing and complete the call. The host's cancel waits for the accesses in
 *     flight to end before it lets the guest reuse the pages, so accesses must be short (a copy)
 *     and must never wait for anything. Accesses nest and may end on another thread than they
 *     began. Never call complete() inside an access.
 *   - For host_call() the parameter array and buffers are valid only during the callback (no
 *     guest access is needed).
 *   - Buffer iovecs point straight into guest RAM (or host memory for host calls). The guest may
 *     change its memory at any time: copy data before parsing it, and never trust it twice.
 *   - Data handed to a state writer is copied before write() returns. Data given to load_state()
 *     and load_client() is valid only during the callback.
 *
 * STATUS CODES
 *   VirtualBox status codes: 0 success, > 0 informational success, < 0 failure. A plugin that
 *   returns an implausible status, completes an unknown or already completed call, or reports a
 *   failure is marked failed: its pending calls fail and it receives no further work.
 */
#ifndef VMMDEV_HGCM_PLUGIN_H
#define VMMDEV_HGCM_PLUGIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VMMDEV_HGCM_ABI_MAJOR 2
#define VMMDEV_HGCM_ABI_MINOR 0
#define VMMDEV_HGCM_LOAD_SYMBOL "vmmdev_hgcm_plugin_load"
#define VMMDEV_HGCM_MAX_SERVICE_NAME_LEN 127

/* vmmdev_hgcm_parm.kind */
#define VMMDEV_HGCM_PARM_U32 1u
#define VMMDEV_HGCM_PARM_U64 2u
#define VMMDEV_HGCM_PARM_BUFFER 3u

/* vmmdev_hgcm_buffer.direction: "to host" = guest -> host, the service reads. */
#define VMMDEV_HGCM_DIR_TO_HOST 1u
#define VMMDEV_HGCM_DIR_FROM_HOST 2u
#define VMMDEV_HGCM_DIR_BOTH 3u

/* call() flags */
#define VMMDEV_HGCM_CALL_FLAG_RESTORED 0x1u

/* host->log() levels */
#define VMMDEV_HGCM_LOG_ERROR 1u
#define VMMDEV_HGCM_LOG_WARN 2u
#define VMMDEV_HGCM_LOG_INFO 3u
#define VMMDEV_HGCM_LOG_DEBUG 4u
#define VMMDEV_HGCM_LOG_TRACE 5u

/* notify() events */
#define VMMDEV_HGCM_EVENT_POWER_ON 1u
#define VMMDEV_HGCM_EVENT_RESUME 2u
#define VMMDEV_HGCM_EVENT_SUSPEND 3u
#define VMMDEV_HGCM_EVENT_RESET 4u
#define VMMDEV_HGCM_EVENT_POWER_OFF 5u

/* Client categories (indices of the limit arrays). */
#define VMMDEV_HGCM_CATEGORY_KERNEL 0u
#define VMMDEV_HGCM_CATEGORY_ROOT 1u
#define VMMDEV_HGCM_CATEGORY_USER 2u

/* The VirtualBox status codes the ABI itself uses. */
#define VMMDEV_VINF_SUCCESS 0
#define VMMDEV_VERR_INVALID_PARAMETER (-2)
#define VMMDEV_VERR_VERSION_MISMATCH (-11)
#define VMMDEV_VERR_NOT_SUPPORTED (-37)
#define VMMDEV_VERR_BUFFER_OVERFLOW (-41)
#define VMMDEV_VERR_TOO_MUCH_DATA (-42)
#define VMMDEV_VERR_CANCELLED (-70)
#define VMMDEV_VERR_NOT_FOUND (-78)
#define VMMDEV_VERR_INVALID_STATE (-79)
#define VMMDEV_VERR_ALREADY_RESET (-359)
#define VMMDEV_VERR_WRONG_TYPE (-22409)

/* Opaque handle of one guest call, valid from call() until host->complete(). */
typedef uint64_t vmmdev_hgcm_call_handle;

/* One contiguous piece of a buffer (same layout as struct iovec). */
typedef struct vmmdev_hgcm_iovec {
    uint8_t *base;
    size_t len;
} vmmdev_hgcm_iovec;

typedef struct vmmdev_hgcm_buffer {
    const vmmdev_hgcm_iovec *iov; /* iov_count pieces, in order; owned by the host */
    uint32_t iov_count;
    uint32_t direction;    /* VMMDEV_HGCM_DIR_* */
    uint32_t len;          /* total length, the sum of the piece lengths */
    uint32_t reported_len; /* in: len; out: bytes produced, <= len */
} vmmdev_hgcm_buffer;

typedef struct vmmdev_hgcm_parm {
    uint32_t kind; /* VMMDEV_HGCM_PARM_*; do not change it */
    uint32_t reserved;
    union {
        uint32_t u32;
        uint64_t u64;
        vmmdev_hgcm_buffer buffer;
    } value;
} vmmdev_hgcm_parm;

/* Sink for saved state; the host copies the bytes before write() returns. */
typedef struct vmmdev_hgcm_state_writer {
    void *ctx;
    int32_t (*write)(void *ctx, const uint8_t *data, size_t len);
} vmmdev_hgcm_state_writer;

/* Services of the host. Pass ctx as the first argument of every function. */
typedef struct vmmdev_hgcm_host_api {
    uint32_t size;
    uint16_t abi_major;
    uint16_t abi_minor;
    void *ctx;
    /* Completes a call exactly once, from any thread: VINF_SUCCESS delivered, VERR_CANCELLED
     * discarded (the caller cancelled), VERR_ALREADY_RESET discarded (guest reset),
     * VERR_WRONG_TYPE unknown handle (a violation that fails the service). */
    int32_t (*complete)(void *ctx, vmmdev_hgcm_call_handle call, int32_t status);
    bool (*is_cancelled)(void *ctx, vmmdev_hgcm_call_handle call);
    /* Opens a guest access for the call (see GUEST ACCESS above): VINF_SUCCESS, VERR_CANCELLED
     * (touch nothing), VERR_NOT_FOUND (unknown or completed handle). */
    int32_t (*begin_guest_access)(void *ctx, vmmdev_hgcm_call_handle call);
    /* Ends one access: VINF_SUCCESS, VERR_INVALID_STATE if none is open. */
    int32_t (*end_guest_access)(void *ctx, vmmdev_hgcm_call_handle call);
    bool (*is_restored)(void *ctx, vmmdev_hgcm_call_handle call);
    uint32_t (*requestor)(void *ctx, vmmdev_hgcm_call_handle call);
    /* Sends (code, payload) to the embedder; never blocks; payload <= 64 KiB, copied. */
    int32_t (*notify_host)(void *ctx, uint32_t code, const uint8_t *payload, size_t len);
    /* Drops a client of this service (no disconnect callback); VERR_NOT_FOUND if not ours. */
    int32_t (*disconnect_client)(void *ctx, uint32_t client);
    void (*log)(void *ctx, uint32_t level, const uint8_t *msg, size_t len);
    /* Declares the service broken: its pending calls fail, it gets no further work. */
    void (*report_failure)(void *ctx, const uint8_t *reason, size_t len);
} vmmdev_hgcm_host_api;

typedef struct vmmdev_hgcm_plugin_table {
    uint32_t size;
    uint16_t abi_major;
    uint16_t abi_minor;
    const char *name; /* NUL-terminated UTF-8, at most 127 bytes */
    uint32_t max_clients[3];          /* per category: kernel, root, user */
    uint32_t max_calls_per_client[3]; /* pending calls per client, by category */
    uint32_t legacy_category;         /* category of clients with the LEGACY requestor */
    uint32_t state_version;           /* given back to load_state/load_client */
    void *instance;                   /* passed to every callback */
    void (*unload)(void *instance);
    int32_t (*connect)(void *instance, uint32_t client, uint32_t requestor, bool restoring);
    int32_t (*disconnect)(void *instance, uint32_t client);
    void (*call)(void *instance, vmmdev_hgcm_call_handle call, uint32_t client, uint32_t function,
                 uint32_t requestor, uint32_t flags, vmmdev_hgcm_parm *parms, uint32_t count);
    void (*cancelled)(void *instance, uint32_t client);
    int32_t (*host_call)(void *instance, uint32_t function, vmmdev_hgcm_parm *parms, uint32_t count);
    int32_t (*save_state)(void *instance, const vmmdev_hgcm_state_writer *writer);
    int32_t (*load_state)(void *instance, uint32_t version, const uint8_t *data, size_t len);
    int32_t (*save_client)(void *instance, uint32_t client, const vmmdev_hgcm_state_writer *writer);
    int32_t (*load_client)(void *instance, uint32_t client, uint32_t version, const uint8_t *data,
                           size_t len);
    void (*notify)(void *instance, uint32_t event);
} vmmdev_hgcm_plugin_table;

typedef int32_t (*vmmdev_hgcm_load_fn)(const vmmdev_hgcm_host_api *host, const char *config,
                                       vmmdev_hgcm_plugin_table *table);

#ifdef __cplusplus
}
#endif

#endif /* VMMDEV_HGCM_PLUGIN_H */
