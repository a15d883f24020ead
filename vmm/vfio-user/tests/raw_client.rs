//! The server driven by a vfio-user client written by hand: every message is built byte by byte
//! on a `UnixStream`, including malformed, hostile and truncated ones.

mod support;

use std::io::Write;
use std::os::fd::AsRawFd;

use support::*;
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};
use vmmdev_vfio_user::wire::{Command, FLAG_NO_REPLY, HEADER_SIZE, Header};

const EINVAL: u32 = libc::EINVAL as u32;

fn eventfd() -> EventFd {
    EventFd::new(EFD_NONBLOCK).unwrap()
}

/// Waits up to 10 s for the eventfd to be signalled; returns the count.
fn wait_signal(fd: &EventFd) -> u64 {
    let mut count = 0;
    wait_until("the INTx eventfd is signalled", || {
        count = fd.read().unwrap_or(0);
        count > 0
    });
    count
}

fn no_signal(fd: &EventFd) -> bool {
    fd.read().is_err()
}

fn hgcm_connect_request(service: &str) -> Vec<u8> {
    let mut name = service.as_bytes().to_vec();
    name.push(0);
    vmmdev_request(
        60,
        168,
        &[
            (24, &0u32.to_le_bytes()),
            (32, &2u32.to_le_bytes()),
            (36, &name),
            (164, &0u32.to_le_bytes()),
        ],
    )
}

/// Connects to `service` from a request at `gpa`; waits for DONE; returns (result, client id).
fn hgcm_connect(client: &mut Client, ram: &GuestRam, gpa: u64, service: &str) -> (i32, u32) {
    ram.write(gpa, &hgcm_connect_request(service));
    client.submit(gpa as u32);
    assert_eq!(ram.i32_at(gpa + 12), 2903, "VINF_HGCM_ASYNC_EXECUTE");
    wait_until("the connect completes", || ram.u32_at(gpa + 24) & 1 != 0);
    (ram.i32_at(gpa + 28), ram.u32_at(gpa + 164))
}

fn acknowledge_events(client: &mut Client, ram: &GuestRam) -> u32 {
    let ack = vmmdev_request(41, 28, &[(24, &0u32.to_le_bytes())]);
    assert_eq!(perform(client, ram, &ack), 0);
    ram.u32_at(REQUEST_GPA + 24)
}

#[test]
fn version_negotiation_answers_with_the_server_capabilities() {
    let server = TestServer::start("version");
    let mut client = server.client();

    let reply = client.negotiate();

    assert_eq!(&reply.body[..2], &[0, 0], "major version 0");
    let json = std::str::from_utf8(&reply.body[4..]).unwrap();
    assert!(json.ends_with('\0'));
    assert!(json.contains("max_data_xfer_size"), "{json}");
}

#[test]
fn message_before_version_is_refused_and_the_connection_goes_on() {
    let server = TestServer::start("before-version");
    let mut client = server.client();

    let reply = client.request(Command::DeviceGetInfo, &[0; 16], &[]);

    assert_eq!(reply.ok().unwrap_err(), EINVAL);
    client.negotiate();
}

#[test]
fn device_info_reports_a_resettable_pci_device_with_nine_regions_and_five_irqs() {
    let server = TestServer::start("device-info");
    let mut client = server.negotiated_client();

    let reply = client
        .request(Command::DeviceGetInfo, &16u32.to_le_bytes().repeat(4), &[])
        .ok()
        .unwrap();

    let field = |i: usize| u32::from_le_bytes(reply.body[i..i + 4].try_into().unwrap());
    assert_eq!(field(4), 0x3, "flags: RESET | PCI");
    assert_eq!(field(8), 9);
    assert_eq!(field(12), 5);
}

#[test]
fn intx_irq_info_is_an_automasked_eventfd_with_one_vector() {
    let server = TestServer::start("irq-info");
    let mut client = server.negotiated_client();
    let mut body = vec![0u8; 16];
    body[0..4].copy_from_slice(&16u32.to_le_bytes());

    let reply = client
        .request(Command::GetIrqInfo, &body, &[])
        .ok()
        .unwrap();

    assert_eq!(
        &reply.body[4..8],
        &7u32.to_le_bytes(),
        "EVENTFD|MASKABLE|AUTOMASKED"
    );
    assert_eq!(&reply.body[12..16], &1u32.to_le_bytes());
}

#[test]
fn bar1_region_info_offers_the_vmmdev_ram_fd_with_one_sparse_area() {
    let server = TestServer::start("region-info");
    let mut client = server.negotiated_client();
    let info = |argsz: u32| {
        let mut body = vec![0u8; 32];
        body[0..4].copy_from_slice(&argsz.to_le_bytes());
        body[8..12].copy_from_slice(&BAR1.to_le_bytes());
        body
    };
    let first = client.request(Command::DeviceGetRegionInfo, &info(32), &[]);
    let full_size = u32::from_le_bytes(first.body[0..4].try_into().unwrap());
    assert!(full_size > 32, "capabilities announced");
    assert!(first.fd.is_none());

    let reply = client
        .request(Command::DeviceGetRegionInfo, &info(full_size), &[])
        .ok()
        .unwrap();

    let field = |i: usize| u32::from_le_bytes(reply.body[i..i + 4].try_into().unwrap());
    assert_eq!(field(4) & 0xF, 0xF, "READ|WRITE|MMAP|CAPS");
    assert_eq!(&reply.body[16..24], &(4u64 << 20).to_le_bytes());
    let cap = &reply.body[32..];
    assert_eq!(
        &cap[0..4],
        &[1, 0, 1, 0],
        "sparse mmap capability, version 1"
    );
    assert_eq!(&cap[8..12], &1u32.to_le_bytes(), "one area");
    assert_eq!(&cap[16..24], &0u64.to_le_bytes());
    assert_eq!(&cap[24..32], &(4u64 << 20).to_le_bytes());
    let ram = reply.fd.expect("BAR1 memfd");
    let mut version = [0u8; 4];
    std::os::unix::fs::FileExt::read_exact_at(&ram, &mut version, 4).unwrap();
    assert_eq!(u32::from_le_bytes(version), 1, "VMMDev memory version");
}

#[test]
fn config_region_reads_the_vmmdev_identity() {
    let server = TestServer::start("config-id");
    let mut client = server.negotiated_client();
    assert_eq!(client.region_read_u32(CONFIG, 0), 0xCAFE_80EE);
    assert_eq!(client.region_read_u32(CONFIG, 0x2C), 0, "subsystem IDs");
}

#[test]
fn bar_sizing_through_the_config_region_reports_the_bar_sizes() {
    let server = TestServer::start("bar-sizing");
    let mut client = server.negotiated_client();

    client.region_write(CONFIG, 0x10, &[0xFF; 4]).unwrap();
    client.region_write(CONFIG, 0x14, &[0xFF; 4]).unwrap();

    assert_eq!(
        client.region_read_u32(CONFIG, 0x10),
        0xFFFF_FFE1,
        "32 I/O ports"
    );
    assert_eq!(
        client.region_read_u32(CONFIG, 0x14),
        0xFFC0_0000,
        "4 MiB memory"
    );
}

#[test]
fn bar1_region_reads_show_the_vmmdev_memory_header() {
    let server = TestServer::start("bar1-read");
    let mut client = server.negotiated_client();
    assert_eq!(client.region_read_u32(BAR1, 0), 0x003F_FD28);
    assert_eq!(client.region_read_u32(BAR1, 4), 1);
}

#[test]
fn region_access_outside_its_region_is_refused_and_the_connection_goes_on() {
    let server = TestServer::start("region-range");
    let mut client = server.negotiated_client();

    assert_eq!(client.region_read(BAR0, 30, 4).unwrap_err(), EINVAL);
    assert_eq!(client.region_read(2, 0, 4).unwrap_err(), EINVAL);
    assert_eq!(
        client.region_write(CONFIG, 255, &[0; 2]).unwrap_err(),
        EINVAL
    );

    assert_eq!(client.region_read_u32(CONFIG, 0), 0xCAFE_80EE);
}

#[test]
fn region_read_of_four_gibibytes_is_refused_without_allocating() {
    let server = TestServer::start("huge-read");
    let mut client = server.negotiated_client();
    assert_eq!(client.region_read(BAR1, 0, u32::MAX).unwrap_err(), EINVAL);
    assert_eq!(client.region_read_u32(BAR1, 4), 1);
}

#[test]
fn request_submitted_through_bar0_is_answered_in_dma_mapped_memory() {
    let server = TestServer::start("get-host-version");
    let ram = GuestRam::new(RAM_SIZE);
    let mut client = client_with_ram(&server, &ram);

    let rc = perform(&mut client, &ram, &vmmdev_request(4, 40, &[]));

    assert_eq!(rc, 0);
    let features = ram.u32_at(REQUEST_GPA + 36);
    assert_eq!(features & 1, 1, "HGCM_PHYS_PAGE_LIST");
}

#[test]
fn dma_map_without_fd_is_accepted_but_gives_the_device_no_memory() {
    let server = TestServer::start("map-no-fd");
    let mut client = server.negotiated_client();

    client.dma_map(1, 0, 0xC0000, 0x20000, None).unwrap();

    let mappings = server.server.dma_mappings();
    assert_eq!(mappings.len(), 1);
    assert!(!mappings[0].accessible);
    client.dma_unmap(0, 0xC0000, 0x20000).unwrap();
    assert!(server.server.dma_mappings().is_empty());
}

#[test]
fn overlapping_dma_map_is_refused_with_eexist() {
    let server = TestServer::start("map-overlap");
    let ram = GuestRam::new(RAM_SIZE);
    let mut client = client_with_ram(&server, &ram);

    let error = client
        .dma_map(DMA_READ_WRITE, 0, 0x8000, 0x1000, Some(ram.fd()))
        .unwrap_err();

    assert_eq!(error, libc::EEXIST as u32);
    assert_eq!(server.server.dma_mappings().len(), 1);
}

#[test]
fn dma_map_beyond_the_end_of_its_file_is_refused() {
    let server = TestServer::start("map-short-file");
    let ram = GuestRam::new(0x1000);
    let mut client = server.negotiated_client();
    let error = client
        .dma_map(DMA_READ_WRITE, 0, 0, 0x10_0000, Some(ram.fd()))
        .unwrap_err();
    assert_eq!(error, EINVAL);
    assert!(server.server.dma_mappings().is_empty());
}

#[test]
fn dma_map_with_two_descriptors_is_refused() {
    let server = TestServer::start("map-two-fds");
    let ram = GuestRam::new(RAM_SIZE);
    let mut client = server.negotiated_client();
    let mut body = Vec::new();
    body.extend_from_slice(&32u32.to_le_bytes());
    body.extend_from_slice(&DMA_READ_WRITE.to_le_bytes());
    body.extend_from_slice(&[0; 24]);
    body[16..24].copy_from_slice(&0x1000u64.to_le_bytes());
    let reply = client.request(Command::DmaMap, &body, &[ram.fd(), ram.fd()]);
    assert_eq!(reply.ok().unwrap_err(), EINVAL);
    assert!(server.server.dma_mappings().is_empty());
}

#[test]
fn dma_unmap_removes_guest_memory_from_the_device() {
    let server = TestServer::start("unmap");
    let ram = GuestRam::new(RAM_SIZE);
    let mut client = client_with_ram(&server, &ram);

    client.dma_unmap(0, 0, RAM_SIZE).unwrap();

    assert!(server.server.dma_mappings().is_empty());
    let request = vmmdev_request(4, 40, &[]);
    assert_eq!(
        perform(&mut client, &ram, &request),
        -1,
        "the device no longer sees it"
    );
}

#[test]
fn dma_unmap_of_an_unmapped_range_is_refused_with_enoent() {
    let server = TestServer::start("unmap-unknown");
    let mut client = server.negotiated_client();
    assert_eq!(
        client.dma_unmap(0, 0x1000, 0x1000).unwrap_err(),
        libc::ENOENT as u32
    );
}

#[test]
fn interrupt_reaches_the_eventfd_and_unmask_redelivers_while_asserted() {
    let server = TestServer::start("intx");
    let ram = GuestRam::new(RAM_SIZE);
    let mut client = client_with_ram(&server, &ram);
    report_guest(&mut client, &ram);
    let fd = eventfd();
    client
        .set_irqs(0, DATA_EVENTFD | ACTION_TRIGGER, 0, 1, &[fd.as_raw_fd()])
        .unwrap();

    server
        .server
        .device()
        .raise_events(vmmdev_protocol::vmmdev::Events::HGCM);
    assert_eq!(wait_signal(&fd), 1);
    client
        .set_irqs(0, DATA_NONE | ACTION_UNMASK, 0, 1, &[])
        .unwrap();
    assert_eq!(wait_signal(&fd), 1, "still asserted: signalled again");

    assert_eq!(acknowledge_events(&mut client, &ram), 0x2);
    client
        .set_irqs(0, DATA_NONE | ACTION_UNMASK, 0, 1, &[])
        .unwrap();
    assert!(no_signal(&fd), "acknowledged: the line is low");
}

#[test]
fn disabled_intx_is_not_signalled() {
    let server = TestServer::start("intx-disable");
    let ram = GuestRam::new(RAM_SIZE);
    let mut client = client_with_ram(&server, &ram);
    report_guest(&mut client, &ram);
    let fd = eventfd();
    client
        .set_irqs(0, DATA_EVENTFD | ACTION_TRIGGER, 0, 1, &[fd.as_raw_fd()])
        .unwrap();

    client
        .set_irqs(0, DATA_NONE | ACTION_TRIGGER, 0, 0, &[])
        .unwrap();
    server
        .server
        .device()
        .raise_events(vmmdev_protocol::vmmdev::Events::HGCM);

    assert!(no_signal(&fd));
}

#[test]
fn set_irqs_with_boolean_data_is_refused() {
    let server = TestServer::start("irq-bool");
    let mut client = server.negotiated_client();
    let mut body = set_irqs_body(0, DATA_BOOL | ACTION_TRIGGER, 0, 1);
    body.push(1);
    let reply = client.request(Command::SetIrqs, &body, &[]);
    assert_eq!(reply.ok().unwrap_err(), libc::ENOTSUP as u32);
    assert_eq!(client.region_read_u32(CONFIG, 0), 0xCAFE_80EE);
}

#[test]
fn resample_eventfd_unmask_is_refused_as_unsupported() {
    let server = TestServer::start("irq-resample");
    let mut client = server.negotiated_client();
    let fd = eventfd();
    let error = client
        .set_irqs(0, DATA_EVENTFD | ACTION_UNMASK, 0, 1, &[fd.as_raw_fd()])
        .unwrap_err();
    assert_eq!(error, libc::ENOTSUP as u32);
}

#[test]
fn hgcm_connect_completes_from_a_service_thread_with_done_flag_and_interrupt() {
    let server = TestServer::start("hgcm-connect");
    let ram = GuestRam::new(RAM_SIZE);
    let mut client = client_with_ram(&server, &ram);
    report_guest(&mut client, &ram);
    let fd = eventfd();
    client
        .set_irqs(0, DATA_EVENTFD | ACTION_TRIGGER, 0, 1, &[fd.as_raw_fd()])
        .unwrap();

    let (result, client_id) = hgcm_connect(&mut client, &ram, 0x2000, "Echo");

    assert_eq!(result, 0);
    assert_ne!(client_id, 0);
    assert_eq!(wait_signal(&fd), 1);
    assert_eq!(
        acknowledge_events(&mut client, &ram) & 0x2,
        0x2,
        "HGCM event"
    );
}

#[test]
fn device_reset_message_resets_the_device() {
    let server = TestServer::start("reset");
    let ram = GuestRam::new(RAM_SIZE);
    let mut client = client_with_ram(&server, &ram);
    report_guest(&mut client, &ram);
    assert_eq!(
        client.region_read_u32(BAR0, 8),
        0,
        "fast ack: nothing pending"
    );

    client.reset().unwrap();

    assert_eq!(
        client.region_read_u32(BAR0, 8),
        0xFFFF_FFFF,
        "fast ack: guest info must be reported again"
    );
}

#[test]
fn no_reply_command_gets_no_reply() {
    let server = TestServer::start("no-reply");
    let mut client = server.negotiated_client();

    client.reset_no_reply();
    let refused = Header {
        message_id: 0x77,
        command: 0x77,
        message_size: HEADER_SIZE as u32,
        flags: FLAG_NO_REPLY,
        error: 0,
    };
    client.send_raw(&refused.to_bytes(), &[]);

    // The next reply is the one to this request (the helper checks the message ID).
    assert_eq!(client.region_read_u32(CONFIG, 0), 0xCAFE_80EE);
}

#[test]
fn unknown_command_gets_enosys_and_the_connection_goes_on() {
    let server = TestServer::start("unknown-command");
    let mut client = server.negotiated_client();
    let header = Header {
        message_id: 0x4242,
        command: 0xBEEF,
        message_size: 24,
        flags: 0,
        error: 0,
    };
    let mut bytes = header.to_bytes().to_vec();
    bytes.extend_from_slice(b"garbage!");
    client.send_raw(&bytes, &[]);

    let reply = client.recv();

    assert_eq!(reply.header.message_id, 0x4242);
    assert!(reply.header.is_error());
    assert_eq!(reply.header.error, libc::ENOSYS as u32);
    assert_eq!(client.region_read_u32(CONFIG, 0), 0xCAFE_80EE);
}

#[test]
fn message_claiming_four_gibibytes_is_refused_with_e2big() {
    let server = TestServer::start("huge-message");
    let mut client = server.negotiated_client();
    let header = Header::command(9, Command::RegionWrite, u32::MAX);
    client.send_raw(&header.to_bytes(), &[]);

    let reply = client.recv();

    assert_eq!(reply.header.message_id, 9);
    assert_eq!(reply.header.error, libc::E2BIG as u32);
    drop(client);
    server.negotiated_client();
}

#[test]
fn oversized_message_is_drained_and_the_connection_goes_on() {
    let server = TestServer::start("oversized");
    let mut client = server.negotiated_client();
    let body = vec![0x55u8; 2 << 20];
    let header = Header::command(5, Command::RegionWrite, (HEADER_SIZE + body.len()) as u32);
    client.send_raw(&header.to_bytes(), &[]);
    client.stream.write_all(&body).unwrap();

    let reply = client.recv();

    assert_eq!(reply.header.error, libc::E2BIG as u32);
    assert_eq!(client.region_read_u32(CONFIG, 0), 0xCAFE_80EE);
}

#[test]
fn message_size_below_a_header_is_refused() {
    let server = TestServer::start("undersized");
    let mut client = server.negotiated_client();
    client.send_raw(&Header::command(3, Command::DeviceReset, 4).to_bytes(), &[]);
    assert_eq!(client.recv().header.error, EINVAL);
    assert_eq!(client.region_read_u32(CONFIG, 0), 0xCAFE_80EE);
}

#[test]
fn disconnect_in_the_middle_of_a_message_leaves_the_server_serving() {
    let server = TestServer::start("truncated");
    {
        let mut client = server.negotiated_client();
        let header = Header::command(2, Command::DmaMap, 48);
        let mut bytes = header.to_bytes().to_vec();
        bytes.extend_from_slice(&[0; 10]);
        client.send_raw(&bytes, &[]);
    }
    {
        let mut client = server.client();
        client.send_raw(&[1, 0, 1], &[]);
    }

    let mut client = server.negotiated_client();

    assert_eq!(client.region_read_u32(CONFIG, 0), 0xCAFE_80EE);
}

#[test]
fn disconnect_resets_the_device_but_keeps_the_services() {
    let server = TestServer::start("disconnect");
    let ram = GuestRam::new(RAM_SIZE);
    {
        let mut client = client_with_ram(&server, &ram);
        report_guest(&mut client, &ram);
        let (result, _) = hgcm_connect(&mut client, &ram, 0x2000, "Echo");
        assert_eq!(result, 0);
        assert_eq!(server.server.device().hgcm().services()[0].clients, 1);
    }

    wait_until("the device is released", || {
        server.server.dma_mappings().is_empty()
    });

    let services = server.server.device().hgcm().services();
    assert_eq!(services.len(), 1);
    assert_eq!(services[0].name, "Echo");
    assert_eq!(services[0].clients, 0, "the departed VM's client is gone");
    let mut next = client_with_ram(&server, &ram);
    assert_eq!(next.region_read_u32(BAR0, 8), 0xFFFF_FFFF, "fresh device");
    report_guest(&mut next, &ram);
    assert_eq!(hgcm_connect(&mut next, &ram, 0x2000, "Echo").0, 0);
}

#[test]
fn messages_are_counted_by_type_and_region() {
    let server = TestServer::start("counters");
    let mut client = server.negotiated_client();
    let before = server.server.message_counts();

    for _ in 0..3 {
        client.region_read_u32(CONFIG, 0);
    }
    client.region_write(BAR1, 0x100, &[1]).unwrap();
    let _ = client.region_read(BAR0, 64, 4);

    let delta = server.server.message_counts().since(&before);
    assert_eq!(delta.command(Command::RegionRead), 4);
    assert_eq!(delta.command(Command::RegionWrite), 1);
    assert_eq!(delta.region_reads(CONFIG), 3);
    assert_eq!(delta.region_writes(BAR1), 1);
    assert_eq!(delta.refused(), 1);
    assert_eq!(delta.total(), 5);
}

#[test]
fn stop_handle_ends_run_and_the_socket_is_removed() {
    let path = std::env::temp_dir().join(format!(
        "vmmdev-vfio-user-it-{}-stop.sock",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    let hgcm = vmmdev_hgcm::Hgcm::new(Default::default());
    let server = std::sync::Arc::new(
        vmmdev_vfio_user::VfioUserServer::new(&path, hgcm, Default::default()).unwrap(),
    );
    let runner = std::sync::Arc::clone(&server);
    let thread = std::thread::spawn(move || runner.run());
    let mut client = Client::connect(&path);
    client.negotiate();

    server.stop_handle().stop();

    thread.join().unwrap().unwrap();
    drop(client);
    drop(server);
    assert!(!path.exists());
}
