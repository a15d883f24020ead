/*
 * vmmdev_guest.h - C interface of vmmdev-guest-ioctl, the guest-side library for the Linux
 * vboxguest driver (/dev/vboxguest, /dev/vboxuser).
 *
 * Link with libvmmdev_guest_ioctl.so, or with libvmmdev_guest_ioctl.a plus -lpthread -ldl -lm.
 *
 * Return values: every int-returning function returns VMMDEV_GUEST_OK (0) on success and a
 * negative VMMDEV_GUEST_E_* code on failure; vmmdev_guest_last_error() then describes the
 * failure of the calling thread.
 *
 * Ownership:
 *  - A session comes from vmmdev_guest_open() and is released with vmmdev_guest_close(), which
 *    also makes the driver disconnect every HGCM client connected through it. A session may be
 *    used by several threads at once (one can wait while another sets properties), but must not
 *    be closed while another thread uses it.
 *  - A client id belongs to the session it was connected on.
 *  - Strings the library returns belong to the caller: free them with
 *    vmmdev_guest_string_free(), or those of a change with vmmdev_guest_prop_change_clear().
 *  - Buffers passed to vmmdev_guest_hgcm_call() stay the caller's; the library accesses them
 *    only during the call. An OUT or INOUT buffer must not overlap any other buffer.
 *  - Strings passed in are NUL-terminated UTF-8 and are only read during the call.
 */
#ifndef VMMDEV_GUEST_H
#define VMMDEV_GUEST_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Return codes. */
#define VMMDEV_GUEST_OK 0
/* A NULL pointer where one is required, a string that is not UTF-8, an unknown parameter type. */
#define VMMDEV_GUEST_E_INVALID_ARGUMENT (-1)
/* The vboxguest driver is not loaded (the device node is missing). */
#define VMMDEV_GUEST_E_NO_DRIVER (-2)
/* The driver refused the caller. */
#define VMMDEV_GUEST_E_PERMISSION_DENIED (-3)
/* A signal interrupted the call, or the host ended the wait; the client stays usable. */
#define VMMDEV_GUEST_E_INTERRUPTED (-4)
/* The timeout expired and the call was cancelled; the client stays usable. */
#define VMMDEV_GUEST_E_TIMED_OUT (-5)
/* The host service answered with a failure status (see the host_status argument or the
 * message). */
#define VMMDEV_GUEST_E_HOST (-6)
/* The guest property does not exist. */
#define VMMDEV_GUEST_E_NOT_FOUND (-7)
/* The property or its namespace is read-only for the guest. */
#define VMMDEV_GUEST_E_ACCESS_DENIED (-8)
/* A value or pattern is too long for the host, or the host's property limit is reached. */
#define VMMDEV_GUEST_E_TOO_LONG (-9)
/* The host has no such service. */
#define VMMDEV_GUEST_E_SERVICE_UNAVAILABLE (-10)
/* Anything else: an operating-system error, another driver interface version, a malformed
 * reply. */
#define VMMDEV_GUEST_E_FAILED (-11)

/* A timeout that never expires. */
#define VMMDEV_GUEST_TIMEOUT_INFINITE UINT32_MAX

/* The HGCM name of the guest-properties service. */
#define VMMDEV_GUEST_PROP_SERVICE "VBoxGuestPropSvc"

/* Guest property flags. */
#define VMMDEV_GUEST_PROP_F_TRANSIENT 0x02u
#define VMMDEV_GUEST_PROP_F_RDONLYGUEST 0x04u
#define VMMDEV_GUEST_PROP_F_RDONLYHOST 0x08u
#define VMMDEV_GUEST_PROP_F_READONLY 0x0Cu
#define VMMDEV_GUEST_PROP_F_TRANSRESET 0x10u

/* A driver session (one open device node). */
typedef struct vmmdev_guest vmmdev_guest;

/* HGCM parameter types. */
#define VMMDEV_GUEST_HGCM_PARAM_U32 1u
#define VMMDEV_GUEST_HGCM_PARAM_U64 2u
#define VMMDEV_GUEST_HGCM_PARAM_IN 3u    /* buffer the host only reads */
#define VMMDEV_GUEST_HGCM_PARAM_OUT 4u   /* buffer the host only writes */
#define VMMDEV_GUEST_HGCM_PARAM_INOUT 5u /* buffer the host reads and writes */

/* One HGCM call parameter. */
typedef struct vmmdev_guest_hgcm_param {
    uint32_t type;  /* VMMDEV_GUEST_HGCM_PARAM_* */
    uint32_t size;  /* buffers: size in bytes; after the call, the bytes the host reported */
    uint64_t value; /* U32 and U64: the value, in and out */
    void *buffer;   /* buffers: the memory (NULL allowed when size is 0) */
} vmmdev_guest_hgcm_param;

/* A guest property change reported by vmmdev_guest_prop_wait(). */
typedef struct vmmdev_guest_prop_change {
    char *name;             /* the property (caller-owned) */
    char *value;            /* the new value, empty for a deletion (caller-owned) */
    uint64_t timestamp;     /* ns since the Unix epoch; pass it as `after` to the next wait */
    uint32_t flags;         /* VMMDEV_GUEST_PROP_F_* */
    uint8_t deleted;        /* 1 if the property was deleted */
    uint8_t missed_changes; /* 1 if changes may have been missed (old starting timestamp) */
} vmmdev_guest_prop_change;

/* Opens a session on the device node `path` (NULL: /dev/vboxuser) and stores it in *session. */
int vmmdev_guest_open(const char *path, vmmdev_guest **session);

/* Closes a session (NULL is ignored). The driver disconnects its HGCM clients. */
void vmmdev_guest_close(vmmdev_guest *session);

/* Connects to the HGCM service `service` and stores the client id in *client_id. */
int vmmdev_guest_hgcm_connect(const vmmdev_guest *session, const char *service,
                              uint32_t *client_id);

/* Disconnects an HGCM client. */
int vmmdev_guest_hgcm_disconnect(const vmmdev_guest *session, uint32_t client_id);

/* Calls `function` of an HGCM client with `count` parameters (params may be NULL when count is
 * 0), waiting at most timeout_ms (VMMDEV_GUEST_TIMEOUT_INFINITE: forever). When the host
 * answered, *host_status (if not NULL) receives its status and the parameters what it wrote
 * back; a failure status returns VMMDEV_GUEST_E_HOST. */
int vmmdev_guest_hgcm_call(const vmmdev_guest *session, uint32_t client_id, uint32_t function,
                           vmmdev_guest_hgcm_param *params, uint32_t count, uint32_t timeout_ms,
                           int32_t *host_status);

/* The guest-property functions take a client connected to VMMDEV_GUEST_PROP_SERVICE. */

/* Reads a property: *value receives its value (free with vmmdev_guest_string_free());
 * timestamp and flags may be NULL. A missing property is VMMDEV_GUEST_E_NOT_FOUND. */
int vmmdev_guest_prop_get(const vmmdev_guest *session, uint32_t client_id, const char *name,
                          char **value, uint64_t *timestamp, uint32_t *flags);

/* Creates or replaces a property with `value` and `flags` (VMMDEV_GUEST_PROP_F_*). */
int vmmdev_guest_prop_set(const vmmdev_guest *session, uint32_t client_id, const char *name,
                          const char *value, uint32_t flags);

/* Deletes a property; deleting a missing one succeeds. */
int vmmdev_guest_prop_delete(const vmmdev_guest *session, uint32_t client_id, const char *name);

/* Waits for the next change of a property whose name matches `patterns` ('|'-separated
 * alternatives with * and ?; "" matches all) after the change with timestamp `after` (0: from
 * now on), at most timeout_ms. On success fills *change; release it with
 * vmmdev_guest_prop_change_clear(). */
int vmmdev_guest_prop_wait(const vmmdev_guest *session, uint32_t client_id, const char *patterns,
                           uint64_t after, uint32_t timeout_ms, vmmdev_guest_prop_change *change);

/* Frees the strings of a change and sets them to NULL (NULL is ignored). */
void vmmdev_guest_prop_change_clear(vmmdev_guest_prop_change *change);

/* Frees a string the library returned (NULL is ignored). */
void vmmdev_guest_string_free(char *text);

/* Copies the calling thread's last failure message into buffer (NUL-terminated, truncated to
 * size bytes; buffer may be NULL when size is 0) and returns the message's full length. */
size_t vmmdev_guest_last_error(char *buffer, size_t size);

#ifdef __cplusplus
}
#endif

#endif /* VMMDEV_GUEST_H */
