//! The chain's classifier (`ebpf/lib/chain.h`): its encoding into `vnf_gen_cfg` and its prefixes,
//! written per generation into the `vnf_cls_*` tries.

use super::abi::{self, Classifier, PortRangeAbi};
use super::config::{ClassifierConfig, IpCidr, MAX_CLASSIFIER_CIDRS, PortRange};
use super::error::{EngineError, Result};
use super::loader::Engine;
use super::maps::PrefixKeys;

fn port_ranges(list: &[PortRange], what: &str) -> Result<(u8, [PortRangeAbi; abi::CLS_MAX_PORTS])> {
    let mut out = [PortRangeAbi::default(); abi::CLS_MAX_PORTS];
    if list.len() > abi::CLS_MAX_PORTS {
        return Err(EngineError::Config(format!(
            "classifier has {} {what} port ranges, at most {} are supported",
            list.len(),
            abi::CLS_MAX_PORTS
        )));
    }
    for (o, r) in out.iter_mut().zip(list) {
        if r.lo > r.hi {
            return Err(EngineError::Config(format!(
                "classifier {what} port range {}-{} is empty",
                r.lo, r.hi
            )));
        }
        *o = PortRangeAbi { lo: r.lo, hi: r.hi };
    }
    Ok((list.len() as u8, out))
}

/// Encodes a classifier: the `vnf_gen_cfg` part and the prefixes for the
/// generation's LPM tries (`bool` = destination).
pub(crate) fn encode(c: &ClassifierConfig) -> Result<(Classifier, Vec<(IpCidr, bool)>)> {
    let mut out = Classifier::default();
    if let Some(f) = c.family {
        if f != 4 && f != 6 {
            return Err(EngineError::Config(format!(
                "IP family must be 4 or 6, got {f}"
            )));
        }
        if let Some(cidr) = c.src.iter().chain(&c.dst).find(|x| x.family() != f) {
            return Err(EngineError::Config(format!(
                "classifier prefix {cidr} does not match IP family {f}"
            )));
        }
        out.fields |= abi::cls::FAMILY;
        out.family = f;
    }
    for (list, what) in [(&c.src, "source"), (&c.dst, "destination")] {
        if list.len() > MAX_CLASSIFIER_CIDRS {
            return Err(EngineError::Config(format!(
                "classifier has {} {what} prefixes, at most {MAX_CLASSIFIER_CIDRS} are supported",
                list.len()
            )));
        }
    }
    if let Some(p) = c.protocol {
        out.fields |= abi::cls::PROTO;
        out.proto = p;
    }
    if !c.src.is_empty() {
        out.fields |= abi::cls::SRC;
    }
    if !c.dst.is_empty() {
        out.fields |= abi::cls::DST;
    }
    if !c.src_ports.is_empty() {
        out.fields |= abi::cls::SPORT;
        (out.nr_sports, out.sports) = port_ranges(&c.src_ports, "source")?;
    }
    if !c.dst_ports.is_empty() {
        out.fields |= abi::cls::DPORT;
        (out.nr_dports, out.dports) = port_ranges(&c.dst_ports, "destination")?;
    }
    if (!c.src_ports.is_empty() || !c.dst_ports.is_empty())
        && !matches!(c.protocol, None | Some(6) | Some(17))
    {
        return Err(EngineError::Config(
            "classifier port ranges need protocol TCP (6) or UDP (17)".into(),
        ));
    }
    let prefixes = c
        .src
        .iter()
        .map(|p| (*p, false))
        .chain(c.dst.iter().map(|p| (*p, true)))
        .collect();
    Ok((out, prefixes))
}

impl Engine {
    /// Replaces the classifier prefixes of generation `generation` (which is inactive).
    pub(super) fn write_classifier_prefixes(
        &mut self,
        generation: u32,
        list: &[(IpCidr, bool)],
    ) -> Result<()> {
        let g = (generation & 1) as usize;
        let old = std::mem::take(&mut self.cls_keys[g]);
        let mut tries = self.maps.cls_tries();
        tries.remove(old)?;
        let mut keys = PrefixKeys::default();
        for (c, dst) in list {
            tries.insert(&mut keys, (generation, c, *dst), 1)?;
        }
        self.cls_keys[g] = keys;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifier_encoding() {
        let c = ClassifierConfig {
            protocol: Some(17),
            dst: vec![
                "10.0.0.0/8".parse().expect("cidr"),
                "2001:db8::/32".parse().expect("cidr"),
            ],
            dst_ports: vec![
                PortRange::new(53, 53).expect("range"),
                PortRange::new(5000, 5010).expect("range"),
            ],
            ..Default::default()
        };
        let (a, prefixes) = encode(&c).expect("valid");
        assert_eq!(a.fields, abi::cls::PROTO | abi::cls::DST | abi::cls::DPORT);
        assert_eq!((a.proto, a.nr_dports, a.nr_sports), (17, 2, 0));
        assert_eq!((a.dports[0].lo, a.dports[0].hi), (53, 53));
        assert_eq!((a.dports[1].lo, a.dports[1].hi), (5000, 5010));
        assert_eq!(prefixes.len(), 2);
        assert!(prefixes.iter().all(|(_, dst)| *dst));
        let mixed = ClassifierConfig {
            family: Some(6),
            src: vec!["10.0.0.0/8".parse().expect("cidr")],
            ..Default::default()
        };
        assert!(encode(&mixed).is_err());
        let too_many = ClassifierConfig {
            protocol: Some(6),
            src_ports: vec![PortRange::single(1); abi::CLS_MAX_PORTS + 1],
            ..Default::default()
        };
        assert!(encode(&too_many).is_err());
        assert_eq!(
            encode(&ClassifierConfig::default())
                .expect("valid")
                .0
                .fields,
            0
        );
    }
}
