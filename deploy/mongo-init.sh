#!/usr/bin/env bash
# Replica-set initiation and health check for the mongo services of
# docker-compose.yml, run as their healthcheck (inside the mongo:7 image).
#
# MongoDB change streams need a replica set, so a single node is started
# with --replSet and initiated here, once: on every run the script asks for
# rs.status(); if the set is not initiated yet (NotYetInitialized, code 94)
# it runs rs.initiate with this one member. Once the node is PRIMARY it
# makes sure the replicator's user exists, and exits 0 only then, so
# services that depend on `service_healthy` start against a writable
# primary with working change streams and their credentials.
#
# Environment (set on the service):
#   RS_NAME    replica set name              (default rs0)
#   RS_HOST    member host:port to advertise (default mongo:27017); clients
#              connecting with ?replicaSet= must be able to resolve it
#   MONGO_PORT port mongod listens on        (default 27017)
#   MONGO_ROOT_PASSWORD_FILE  the root user's password (user root, created
#              by the image from MONGO_INITDB_ROOT_*); unset: no
#              authentication (the test profile's server)
#   MONGO_CDC_PASSWORD_FILE   the replicator's user cdc: read on
#              $CDC_DATABASE (the change stream, snapshots, verify) and on
#              local (the oplog window: status, headroom, replay oplog)
#   CDC_DATABASE             the replicated database (default escrow)
#   CDC_COLLECTIONS          replicated collections (space-separated) to
#              create with changeStreamPreAndPostImages enabled, or collMod
#              when they exist: tailer.full_document post_image (the
#              default) refuses collections without it (docs/runbook.md)
set -euo pipefail

RS_NAME=${RS_NAME:-rs0}
RS_HOST=${RS_HOST:-mongo:27017}
MONGO_PORT=${MONGO_PORT:-27017}
CDC_DATABASE=${CDC_DATABASE:-escrow}
CDC_COLLECTIONS=${CDC_COLLECTIONS:-}

auth=()
if [[ -n ${MONGO_ROOT_PASSWORD_FILE:-} ]]; then
  auth=(--username root --password "$(cat "$MONGO_ROOT_PASSWORD_FILE")" --authenticationDatabase admin)
fi
cdc_pw=""
if [[ -n ${MONGO_CDC_PASSWORD_FILE:-} ]]; then
  cdc_pw=$(cat "$MONGO_CDC_PASSWORD_FILE")
fi

exec mongosh --quiet --port "$MONGO_PORT" "${auth[@]}" --eval "
const want = { _id: '$RS_NAME', members: [ { _id: 0, host: '$RS_HOST' } ] };
let st;
try {
  st = db.adminCommand({ replSetGetStatus: 1 });
} catch (e) {
  st = { ok: 0, code: e.code, errmsg: e.message };
}
if (st.ok !== 1) {
  if (st.code !== 94) { // NotYetInitialized
    print('replSetGetStatus failed: ' + st.errmsg);
    quit(1);
  }
  const r = db.adminCommand({ replSetInitiate: want });
  print('replSetInitiate ' + JSON.stringify(want) + ': ' + JSON.stringify(r));
  quit(1); // healthy on a later run, once this node is primary
}
if (st.set !== '$RS_NAME') {
  print('replica set is ' + st.set + ', want $RS_NAME');
  quit(1);
}
if (!db.hello().isWritablePrimary) {
  quit(1);
}
const pw = '$cdc_pw';
if (pw !== '') {
  const admin = db.getSiblingDB('admin');
  const roles = [ { role: 'read', db: '$CDC_DATABASE' }, { role: 'read', db: 'local' } ];
  if (admin.getUser('cdc') === null) {
    admin.createUser({ user: 'cdc', pwd: pw, roles: roles });
    print('created user cdc');
  }
}
// Point-in-time images for every replicated collection (post_image mode).
const target = db.getSiblingDB('$CDC_DATABASE');
for (const c of '$CDC_COLLECTIONS'.split(' ').filter(Boolean)) {
  const info = target.getCollectionInfos({ name: c })[0];
  if (info === undefined) {
    target.createCollection(c, { changeStreamPreAndPostImages: { enabled: true } });
    print('created ' + c + ' with pre- and post-images');
  } else if (!(info.options.changeStreamPreAndPostImages || {}).enabled) {
    target.runCommand({ collMod: c, changeStreamPreAndPostImages: { enabled: true } });
    print('enabled pre- and post-images on ' + c);
  }
}
quit(0);
"
