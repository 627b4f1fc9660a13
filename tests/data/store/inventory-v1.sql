-- The inventory as every release before the farm (#13) created it: schema
-- version 1, verbatim from user/inventory.c of main at ff81722, with rows.
-- t_store_migrate opens it with the current daemon: migrated, rows kept.
CREATE TABLE IF NOT EXISTS devices ( user TEXT NOT NULL COLLATE NOCASE, device_id TEXT NOT NULL COLLATE NOCASE, device_type TEXT DEFAULT '', device_model TEXT DEFAULT '', device_os TEXT DEFAULT '', os_key TEXT DEFAULT '', os_family TEXT DEFAULT '', user_agent TEXT DEFAULT '', friendly_name TEXT DEFAULT '', imei TEXT DEFAULT '', mobile_operator TEXT DEFAULT '', phone_number TEXT DEFAULT '', os_language TEXT DEFAULT '', xmswl TEXT DEFAULT '', protocol TEXT DEFAULT '', last_cmd TEXT DEFAULT '', first_sync INTEGER DEFAULT 0, last_attempt INTEGER DEFAULT 0, last_success INTEGER DEFAULT 0, last_status INTEGER DEFAULT 0, access_state TEXT DEFAULT '', state_reason TEXT DEFAULT '', rule TEXT DEFAULT '', admin_state INTEGER DEFAULT 0, admin_at INTEGER DEFAULT 0, PRIMARY KEY (user, device_id));
CREATE TABLE IF NOT EXISTS os_versions ( os_key TEXT PRIMARY KEY COLLATE NOCASE, family TEXT DEFAULT '', first_seen INTEGER NOT NULL, approved INTEGER DEFAULT 0, approved_at INTEGER DEFAULT 0);
CREATE TABLE IF NOT EXISTS rules ( id INTEGER PRIMARY KEY AUTOINCREMENT, text TEXT NOT NULL, created INTEGER DEFAULT 0);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT);
INSERT OR IGNORE INTO meta VALUES ('schema', '1');

INSERT INTO devices (user, device_id, device_type, device_model, device_os, os_key, os_family,
  user_agent, friendly_name, imei, mobile_operator, protocol, last_cmd, first_sync, last_attempt,
  last_success, last_status, access_state, state_reason, rule, admin_state, admin_at) VALUES
 ('alice@corp.example', 'ApplOLD1', 'iPhone', 'iPhone5C2', 'iOS 6.1.4 10B350', 'iOS 6.1.4 10B350', 'iOS',
  'Apple-iPhone5C2/1002.350', 'Alice phone', '013XXXXXXXXXXXX', 'Carrier A', '14.1', 'Sync',
  1700000000, 1700003600, 1700003600, 200, 'Allowed', 'RULE', 'allow-ios', 0, 0),
 ('bob@corp.example', 'AndrOLD2', 'Android', 'SM-G900F', 'Android 4.4.2', 'Android 4.4.2', 'Android',
  'Android-SAMSUNG-SM-G900F/101.40402', 'Bob', '', '', '14.0', 'Ping',
  1700000100, 1700007200, 1700007000, 200, 'Blocked', 'ADMIN', '', 2, 1700001000),
 ('carol@corp.example', 'QuarOLD3', 'WindowsPhone', '', '', '', '',
  'MSFT-WP/8.0', '', '', '', '12.1', 'FolderSync',
  1700000200, 1700000300, 0, 200, 'Quarantined', 'DEFAULT', '', 0, 0);
INSERT INTO os_versions (os_key, family, first_seen, approved, approved_at) VALUES
 ('iOS 6.1.4 10B350', 'iOS', 1700000000, 1, 1700000500),
 ('Android 4.4.2', 'Android', 1700000100, 0, 0);
INSERT INTO rules (text, created) VALUES ('block DeviceModel is "OLDPHONE"', 1700000000),
 ('quarantine UserAgent like "MSFT-WP/*"', 1700000001);
