//! Fds a syscall installed somewhere other than its return value: SCM_RIGHTS and SCM_PIDFD
//! control messages of recvmsg/recvmmsg, clone's CLONE_PIDFD pidfd, getsockopt's
//! SO_PEERPIDFD. Decoded from the kernel's records into plain fd numbers, with an honest
//! count of what could not be read.

use leakscope_common::fd_arrival::{CMSGHDR_SIZE, SCM_PIDFD, SCM_RIGHTS, SOL_SOCKET, cmsg_align};

/// What one record says arrived.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Delivered {
    /// SCM_RIGHTS fds, in message order.
    pub(crate) rights: Vec<i32>,
    /// pidfds (SCM_PIDFD, CLONE_PIDFD, SO_PEERPIDFD): the kernel makes these CLOEXEC.
    pub(crate) pidfds: Vec<i32>,
    /// Deliveries whose fds could not be read (control data cut at the kernel's copy cap
    /// or unreadable, recvmmsg messages beyond the cap, an unreadable pidfd pointer).
    /// Nonzero means the ledger may miss fds: the run's verdicts cannot be trusted.
    pub(crate) unread: u32,
    /// A later record of one recvmmsg call (one record per message with control data):
    /// the call was already counted.
    pub(crate) continues_call: bool,
}

impl Delivered {
    /// One fd written to user memory (clone's pidfd, SO_PEERPIDFD), or `None` when the
    /// kernel could not read it back.
    pub(crate) fn pidfd(fd: Option<i32>) -> Self {
        match fd {
            Some(fd) => Delivered {
                pidfds: vec![fd],
                ..Default::default()
            },
            None => Delivered {
                unread: 1,
                ..Default::default()
            },
        }
    }
}

/// Decodes a chain of `struct cmsghdr` (x86_64: `u64 cmsg_len; i32 level; i32 type;` then
/// data, each cmsg starting at an 8-byte boundary). `control_len` is the length the kernel
/// delivered; `bytes` is the prefix of it that was copied (shorter when cut). Only
/// SOL_SOCKET SCM_RIGHTS and SCM_PIDFD carry fds; other cmsgs are skipped.
pub(crate) fn decode_control(bytes: &[u8], control_len: usize) -> Delivered {
    let mut delivered = Delivered::default();
    let mut offset = 0usize;
    while offset + CMSGHDR_SIZE <= control_len {
        let Some(header) = bytes.get(offset..offset + CMSGHDR_SIZE) else {
            delivered.unread += 1; // the rest of the chain was cut
            break;
        };
        let cmsg_len = u64::from_ne_bytes(header[0..8].try_into().unwrap()) as usize;
        let level = i32::from_ne_bytes(header[8..12].try_into().unwrap()) as u64;
        let kind = u32::from_ne_bytes(header[12..16].try_into().unwrap());
        if cmsg_len < CMSGHDR_SIZE {
            break; // the kernel never writes this; nothing after it can be trusted
        }
        let end = (offset + cmsg_len).min(control_len);
        let carries_fds = level == SOL_SOCKET && (kind == SCM_RIGHTS || kind == SCM_PIDFD);
        if carries_fds {
            let data_start = offset + CMSGHDR_SIZE;
            let available = bytes.len().min(end);
            let fds = bytes
                .get(data_start..available.max(data_start))
                .unwrap_or_default()
                .chunks_exact(4)
                .map(|fd| i32::from_ne_bytes(fd.try_into().unwrap()));
            if kind == SCM_RIGHTS {
                delivered.rights.extend(fds);
            } else {
                delivered.pidfds.extend(fds);
            }
            if available < end {
                delivered.unread += 1; // this cmsg's fds were cut
            }
        }
        offset += cmsg_align(cmsg_len as u64) as usize;
    }
    delivered
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmsg(level: i32, kind: u32, data: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&((CMSGHDR_SIZE + data.len()) as u64).to_ne_bytes());
        bytes.extend_from_slice(&level.to_ne_bytes());
        bytes.extend_from_slice(&kind.to_ne_bytes());
        bytes.extend_from_slice(data);
        while bytes.len() % 8 != 0 {
            bytes.push(0);
        }
        bytes
    }

    fn fds(list: &[i32]) -> Vec<u8> {
        list.iter().flat_map(|fd| fd.to_ne_bytes()).collect()
    }

    #[test]
    fn one_scm_rights_with_two_fds() {
        let bytes = cmsg(1, SCM_RIGHTS, &fds(&[5, 6]));
        assert_eq!(
            decode_control(&bytes, bytes.len()),
            Delivered {
                rights: vec![5, 6],
                ..Default::default()
            }
        );
    }

    #[test]
    fn two_cmsgs_and_alignment() {
        // An odd number of fds leaves 4 bytes of padding before the next cmsg.
        let mut bytes = cmsg(1, SCM_RIGHTS, &fds(&[7, 8, 9]));
        assert_eq!(bytes.len(), 32);
        bytes.extend(cmsg(1, SCM_PIDFD, &fds(&[10])));
        let delivered = decode_control(&bytes, bytes.len());
        assert_eq!(delivered.rights, vec![7, 8, 9]);
        assert_eq!(delivered.pidfds, vec![10]);
        assert_eq!(delivered.unread, 0);
    }

    #[test]
    fn cmsgs_without_fds_are_skipped() {
        // SCM_CREDENTIALS (level 1, type 2), IP_PKTINFO (level 0, type 8), then SCM_RIGHTS.
        let mut bytes = cmsg(1, 2, &[0; 12]);
        bytes.extend(cmsg(0, 8, &[0; 12]));
        bytes.extend(cmsg(1, SCM_RIGHTS, &fds(&[4])));
        let delivered = decode_control(&bytes, bytes.len());
        assert_eq!(delivered.rights, vec![4]);
        assert!(delivered.pidfds.is_empty());
        assert_eq!(delivered.unread, 0);
        let only_credentials = cmsg(1, 2, &[0; 12]);
        assert_eq!(
            decode_control(&only_credentials, only_credentials.len()),
            Delivered::default()
        );
    }

    #[test]
    fn truncated_buffer_keeps_what_was_copied_and_says_so() {
        let bytes = cmsg(1, SCM_RIGHTS, &fds(&[3, 4, 5, 6]));
        // The kernel delivered 32 bytes but only 24 were copied: fds 3 and 4, the rest unread.
        let delivered = decode_control(&bytes[..24], bytes.len());
        assert_eq!(delivered.rights, vec![3, 4]);
        assert_eq!(delivered.unread, 1);
        // A second cmsg whose header was cut entirely.
        let mut two = cmsg(1, SCM_RIGHTS, &fds(&[3, 4]));
        two.extend(cmsg(1, SCM_RIGHTS, &fds(&[5])));
        let delivered = decode_control(&two[..24], two.len());
        assert_eq!(delivered.rights, vec![3, 4]);
        assert_eq!(delivered.unread, 1);
    }

    #[test]
    fn a_garbage_length_stops_the_walk() {
        let mut bytes = cmsg(1, SCM_RIGHTS, &fds(&[3]));
        bytes[0..8].copy_from_slice(&4u64.to_ne_bytes());
        assert_eq!(decode_control(&bytes, bytes.len()), Delivered::default());
        assert_eq!(decode_control(&[], 0), Delivered::default());
    }
}
