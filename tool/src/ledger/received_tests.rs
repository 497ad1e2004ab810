//! Fds that arrive beyond a return value: SCM_RIGHTS over a socket, pidfds.

const RECEIVED_SITE: &str = "fd received over a socket (SCM_RIGHTS)";
use super::test_support::{Stream, call};
use super::*;
use crate::delivered::Delivered;
use crate::iterations::{self, IterationRequest};
use leakscope_common::fd_arrival::{CLONE_PIDFD, MSG_CMSG_CLOEXEC};
use leakscope_common::syscalls as nr;

const PID: u32 = 100;

fn recvmsg(s: &mut Stream, flags: u64, fds: &[i32]) {
    s.sys(
        call(nr::RECVMSG, 1, [3, 0x7ff0, flags, 0, 0, 0]).with_delivered(Delivered {
            rights: fds.to_vec(),
            ..Default::default()
        }),
    );
}

fn live(ledger: &Ledger) -> Vec<(i32, String)> {
    ledger.open_fds(PID).into_iter().collect()
}

#[test]
fn received_fds_are_installed_with_their_site_and_released_by_close() {
    let mut s = Stream::new(PID);
    recvmsg(&mut s, 0, &[5, 6]);
    let ledger = s.ledger();
    assert_eq!(
        live(&ledger),
        vec![
            (5, RECEIVED_SITE.to_string()),
            (6, RECEIVED_SITE.to_string())
        ]
    );
    assert_eq!(ledger.counts().get("recvmsg"), Some(&1));
    s.close(5).close(6);
    let ledger = s.ledger();
    assert!(live(&ledger).is_empty());
    assert_eq!(ledger.unknown_releases(), 0);
}

#[test]
fn msg_cmsg_cloexec_received_fds_close_on_exec() {
    let mut s = Stream::new(PID);
    recvmsg(&mut s, MSG_CMSG_CLOEXEC, &[5, 6]);
    recvmsg(&mut s, 0, &[7]);
    s.push(PID, PID, What::Exec(None), None);
    let ledger = s.ledger();
    assert_eq!(live(&ledger), vec![(7, RECEIVED_SITE.to_string())]);
    assert_eq!(ledger.is_cloexec(PID, 7), Some(false));
}

#[test]
fn recvmmsg_reads_its_flags_from_the_fourth_argument() {
    let mut s = Stream::new(PID);
    s.sys(
        call(nr::RECVMMSG, 2, [3, 0x7ff0, 4, MSG_CMSG_CLOEXEC, 0, 0]).with_delivered(Delivered {
            rights: vec![8],
            ..Default::default()
        }),
    );
    let ledger = s.ledger();
    assert_eq!(ledger.is_cloexec(PID, 8), Some(true));
}

#[test]
fn pidfds_from_clone_are_cloexec_and_named() {
    let mut s = Stream::new(PID);
    s.sys(
        call(nr::CLONE, 4321, [CLONE_PIDFD | 17, 0, 0x7ff0, 0, 0, 0])
            .with_delivered(Delivered::pidfd(Some(9))),
    );
    let ledger = s.ledger();
    assert_eq!(
        live(&ledger),
        vec![(9, "anon:pidfd (clone CLONE_PIDFD)".to_string())]
    );
    assert_eq!(ledger.is_cloexec(PID, 9), Some(true));
}

#[test]
fn unread_deliveries_make_every_verdict_inconclusive() {
    let mut s = Stream::new(PID);
    for i in 0..200 {
        s.marker();
        s.open("/tmp/tick", 3).close(3);
        if i == 100 {
            // A message whose control data was cut: its fds are unknown.
            s.sys(
                call(nr::RECVMSG, 1, [3, 0x7ff0, 0, 0, 0, 0]).with_delivered(Delivered {
                    rights: vec![5],
                    unread: 1,
                    ..Default::default()
                }),
            );
        }
    }
    let ledger = s.ledger();
    assert_eq!(ledger.unread_deliveries(), 1);
    let iterations = iterations::detect(&ledger, &IterationRequest::Symbol("m".into()));
    let analysis =
        crate::analysis::analyze(&ledger, &iterations, &crate::analysis::RunFacts::default());
    let fd = &analysis.fd.count;
    assert_eq!(
        fd.verdict,
        crate::analysis::trend::Verdict::Inconclusive,
        "{fd:?}"
    );
}

#[test]
fn a_recvmmsg_with_several_fd_messages_is_counted_once() {
    let mut s = Stream::new(PID);
    for (index, fd) in [5, 6].into_iter().enumerate() {
        s.sys(
            call(nr::RECVMMSG, 2, [3, 0x7ff0, 2, 0, 0, 0]).with_delivered(Delivered {
                rights: vec![fd],
                continues_call: index > 0,
                ..Default::default()
            }),
        );
    }
    let ledger = s.ledger();
    assert_eq!(ledger.counts().get("recvmmsg"), Some(&1));
    assert_eq!(live(&ledger).len(), 2);
}
