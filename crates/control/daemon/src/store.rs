//! The definitions, kept in a redb database under the state directory. Each change is
//! one committed transaction, so a `kill -9` of the daemon at any moment leaves either
//! the old value or the new one, never a torn one.

use std::path::Path;

use gasang_api::VmDefinition;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

/// Name → [`StoredVm`] as JSON.
const VMS: TableDefinition<&str, &[u8]> = TableDefinition::new("vms");
/// The daemon's own facts ("boot_id": the host boot its runtime directories are from).
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");

/// The database failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Opening or creating the file.
    #[error("cannot open the database {path}")]
    Open {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: redb::DatabaseError,
    },
    /// A transaction, table, read or write failed.
    #[error("database error")]
    Db(#[from] redb::Error),
    /// A record does not parse: the file was written by something else.
    #[error("the stored record for {0:?} is corrupt")]
    Corrupt(String),
}

macro_rules! db_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                Self::Db(e.into())
            }
        }
    )*};
}
db_from!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// What is kept of one VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredVm {
    /// Its definition as the user gave it.
    pub definition: VmDefinition,
    /// Made by `create`: forgotten when it stops.
    pub transient: bool,
}

/// The database.
#[derive(Debug)]
pub struct Store {
    db: Database,
}

impl Store {
    /// Opens (or creates) `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(|source| StoreError::Open {
            path: path.display().to_string(),
            source,
        })?;
        let txn = db.begin_write()?;
        txn.open_table(VMS)?;
        txn.open_table(META)?;
        txn.commit()?;
        Ok(Self { db })
    }

    /// Every stored VM, by name.
    pub fn list(&self) -> Result<Vec<StoredVm>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(VMS)?;
        let mut vms = Vec::new();
        for entry in table.iter()? {
            let (name, value) = entry?;
            let vm = serde_json::from_slice(value.value())
                .map_err(|_| StoreError::Corrupt(name.value().to_string()))?;
            vms.push(vm);
        }
        Ok(vms)
    }

    /// Stores `vm` under its name, replacing what was there.
    pub fn put(&self, vm: &StoredVm) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(vm).map_err(|_| StoreError::Corrupt(vm.name().into()))?;
        let txn = self.db.begin_write()?;
        txn.open_table(VMS)?.insert(vm.name(), bytes.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// Forgets `name`; nothing if it is not there.
    pub fn remove(&self, name: &str) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(VMS)?.remove(name)?;
        txn.commit()?;
        Ok(())
    }

    /// A stored fact of the daemon's.
    pub fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(META)?;
        let value = table.get(key)?.map(|v| v.value().to_string());
        Ok(value)
    }

    /// Stores a fact of the daemon's.
    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(META)?.insert(key, value)?;
        txn.commit()?;
        Ok(())
    }
}

impl StoredVm {
    /// The VM's name.
    pub fn name(&self) -> &str {
        &self.definition.name
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test
mod tests {
    use super::*;

    fn vm(name: &str) -> StoredVm {
        let text = format!("name = \"{name}\"\nkernel = \"/k\"\n");
        StoredVm {
            definition: VmDefinition::from_toml(&text).unwrap(),
            transient: false,
        }
    }

    #[test]
    fn test_definitions_survive_reopening() {
        let dir = std::env::temp_dir().join(format!("gasang-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.redb");
        {
            let store = Store::open(&path).unwrap();
            store.put(&vm("b")).unwrap();
            store.put(&vm("a")).unwrap();
            store.put(&vm("gone")).unwrap();
            store.remove("gone").unwrap();
            store.remove("never-there").unwrap();
            store.set_meta("boot_id", "x").unwrap();
        }
        let store = Store::open(&path).unwrap();
        let names: Vec<String> = store
            .list()
            .unwrap()
            .iter()
            .map(|v| v.name().into())
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(store.meta("boot_id").unwrap().as_deref(), Some("x"));
        assert_eq!(store.meta("other").unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
