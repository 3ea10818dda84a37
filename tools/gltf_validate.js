// Validate a .glb/.gltf with the Khronos glTF-Validator; prints a JSON summary.
// Install once: npm install --prefix tools gltf-validator@2.0.0-dev.3.10
const v = require('gltf-validator');
const fs = require('fs');
const data = new Uint8Array(fs.readFileSync(process.argv[2]));
v.validateBytes(data).then((r) => {
  const msgs = r.issues.messages.filter((m) => m.severity <= 1).slice(0, 5);
  console.log(JSON.stringify({errors: r.issues.numErrors, warnings: r.issues.numWarnings, messages: msgs}));
}).catch((e) => { console.log(JSON.stringify({errors: 1, exception: String(e)})); });
