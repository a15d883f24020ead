/*
 * A small echo service written in C against vmmdev_hgcm_plugin.h, loaded by the real loader in
 * tests/plugins.rs. Function 1 copies buffer 0 into buffer 1 inside a guest access and reports
 * the length; host function 1 returns the number of calls served in parameter 0.
 *
 * Build-time knobs used by the loader tests:
 *   TEST_CLAIM_ABI_MAJOR  the ABI major version the plugin claims (default: the header's)
 *   TEST_TABLE_SIZE       the table size the plugin declares (default: sizeof the table)
 *   TEST_NO_EXPORT        build the library without the load symbol
 */
#include <stdlib.h>
#include <string.h>

#include "vmmdev_hgcm_plugin.h"

#ifndef TEST_CLAIM_ABI_MAJOR
#define TEST_CLAIM_ABI_MAJOR VMMDEV_HGCM_ABI_MAJOR
#endif
#ifndef TEST_TABLE_SIZE
#define TEST_TABLE_SIZE sizeof(vmmdev_hgcm_plugin_table)
#endif

struct c_echo {
    vmmdev_hgcm_host_api host;
    uint32_t served;
};

static size_t copy_buffer(const vmmdev_hgcm_buffer *from, const vmmdev_hgcm_buffer *to)
{
    size_t copied = 0, fi = 0, fo = 0, ti = 0, to_off = 0;
    while (fi < from->iov_count && ti < to->iov_count) {
        size_t n = from->iov[fi].len - fo;
        if (to->iov[ti].len - to_off < n)
            n = to->iov[ti].len - to_off;
        memcpy(to->iov[ti].base + to_off, from->iov[fi].base + fo, n);
        copied += n;
        fo += n;
        to_off += n;
        if (fo == from->iov[fi].len) { fi++; fo = 0; }
        if (to_off == to->iov[ti].len) { ti++; to_off = 0; }
    }
    return copied;
}

static void c_echo_call(void *instance, vmmdev_hgcm_call_handle call, uint32_t client,
                        uint32_t function, uint32_t requestor, uint32_t flags,
                        vmmdev_hgcm_parm *parms, uint32_t count)
{
    struct c_echo *self = instance;
    int32_t status = VMMDEV_VINF_SUCCESS;
    (void)client; (void)requestor; (void)flags;
    self->served++;
    if (function != 1) {
        status = VMMDEV_VERR_NOT_SUPPORTED;
    } else if (count != 2 || parms[0].kind != VMMDEV_HGCM_PARM_BUFFER ||
               parms[1].kind != VMMDEV_HGCM_PARM_BUFFER ||
               !(parms[1].value.buffer.direction & VMMDEV_HGCM_DIR_FROM_HOST)) {
        status = VMMDEV_VERR_INVALID_PARAMETER;
    } else if (self->host.begin_guest_access(self->host.ctx, call) != VMMDEV_VINF_SUCCESS) {
        status = VMMDEV_VERR_CANCELLED;
    } else {
        size_t copied = copy_buffer(&parms[0].value.buffer, &parms[1].value.buffer);
        self->host.end_guest_access(self->host.ctx, call);
        parms[1].value.buffer.reported_len = (uint32_t)copied;
        if (copied < parms[0].value.buffer.len)
            status = VMMDEV_VERR_BUFFER_OVERFLOW;
    }
    self->host.complete(self->host.ctx, call, status);
}

static int32_t c_echo_host_call(void *instance, uint32_t function, vmmdev_hgcm_parm *parms,
                                uint32_t count)
{
    struct c_echo *self = instance;
    if (function != 1)
        return VMMDEV_VERR_NOT_SUPPORTED;
    if (count != 1 || parms[0].kind != VMMDEV_HGCM_PARM_U32)
        return VMMDEV_VERR_INVALID_PARAMETER;
    parms[0].value.u32 = self->served;
    return VMMDEV_VINF_SUCCESS;
}

static void c_echo_unload(void *instance)
{
    free(instance);
}

#ifndef TEST_NO_EXPORT
int32_t vmmdev_hgcm_plugin_load(const vmmdev_hgcm_host_api *host, const char *config,
                                vmmdev_hgcm_plugin_table *table)
#else
int32_t not_the_load_symbol(const vmmdev_hgcm_host_api *host, const char *config,
                            vmmdev_hgcm_plugin_table *table);
int32_t not_the_load_symbol(const vmmdev_hgcm_host_api *host, const char *config,
                            vmmdev_hgcm_plugin_table *table)
#endif
{
    struct c_echo *self;
    table->abi_major = TEST_CLAIM_ABI_MAJOR;
    table->abi_minor = VMMDEV_HGCM_ABI_MINOR;
    if (host->abi_major != VMMDEV_HGCM_ABI_MAJOR || table->size < sizeof(*table))
        return VMMDEV_VERR_VERSION_MISMATCH;
    if (config && strcmp(config, "refuse") == 0)
        return VMMDEV_VERR_INVALID_PARAMETER;
    self = calloc(1, sizeof(*self));
    if (!self)
        return VMMDEV_VERR_INVALID_PARAMETER;
    self->host = *host;
    table->size = (uint32_t)(TEST_TABLE_SIZE);
    table->name = "CEcho";
    table->instance = self;
    table->unload = c_echo_unload;
    table->call = c_echo_call;
    table->host_call = c_echo_host_call;
    return VMMDEV_VINF_SUCCESS;
}
