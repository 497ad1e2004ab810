//! Interned site names ("where a resource came from"), so each of possibly millions of
//! resource records carries a 4-byte id instead of its own copy of a path or stack.

use std::collections::HashMap;
use std::sync::Arc;

pub type SiteId = u32;

#[derive(Debug, Default, Clone)]
pub struct Sites {
    ids: HashMap<Arc<str>, SiteId>,
    names: Vec<Arc<str>>,
}

impl Sites {
    pub fn intern(&mut self, name: &str) -> SiteId {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = SiteId::try_from(self.names.len()).expect("fewer than 2^32 distinct sites");
        let name: Arc<str> = Arc::from(name);
        self.names.push(name.clone());
        self.ids.insert(name, id);
        id
    }

    pub fn name(&self, id: SiteId) -> &str {
        &self.names[id as usize]
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_name_same_id() {
        let mut sites = Sites::default();
        let a = sites.intern("/tmp/a");
        let b = sites.intern("socket");
        assert_eq!(sites.intern("/tmp/a"), a);
        assert_ne!(a, b);
        assert_eq!(sites.name(b), "socket");
        assert_eq!(sites.len(), 2);
    }
}
