// Load a .glb with Babylon.js's own glTF loader and its KHR_gaussian_splatting extension (headless,
// NullEngine) and write the splat rows the loader hands its GaussianSplattingMesh: the .splat layout
// (32 bytes a splat: position f32 x3, linear scale f32 x3, RGBA u8, quaternion w, x, y, z u8).
// Prints a JSON summary. Install once (as .ci/run does):
//   npm install --prefix tools @babylonjs/core@9.28.0 @babylonjs/loaders@9.28.0 babylonjs-gltf2interface@9.28.0
// Usage: node tools/babylon_splat.mjs IN.glb OUT.splat
import fs from "node:fs";
import { NullEngine } from "@babylonjs/core/Engines/nullEngine.js";
import { Scene } from "@babylonjs/core/scene.js";
import { LoadAssetContainerAsync } from "@babylonjs/core/Loading/sceneLoader.js";
import { GaussianSplattingMesh } from "@babylonjs/core/Meshes/GaussianSplatting/gaussianSplattingMesh.js";
import "@babylonjs/loaders/glTF/2.0/index.js";

const [src, dst] = process.argv.slice(2);
let rows = null;
const upload = GaussianSplattingMesh.prototype.updateDataAsync;
GaussianSplattingMesh.prototype.updateDataAsync = function (data, ...rest) {
  rows = new Uint8Array(data.slice(0));  // what the extension decoded, before the GPU upload
  return upload.call(this, data, ...rest);
};
// Node has no Web Worker; Babylon sorts splats by depth in one, which a headless load never runs
globalThis.Worker ??= class { postMessage() {} terminate() {} addEventListener() {} removeEventListener() {} };
const scene = new Scene(new NullEngine());
try {
  const container = await LoadAssetContainerAsync(new Uint8Array(fs.readFileSync(src)), scene, { pluginExtension: ".glb" });
  const meshes = container.meshes.filter((m) => m instanceof GaussianSplattingMesh);
  if (!meshes.length || !rows) throw new Error("no GaussianSplattingMesh loaded");
  fs.writeFileSync(dst, rows);
  console.log(JSON.stringify({ meshes: meshes.length, splats: rows.length / 32 }));
} catch (e) {
  console.log(JSON.stringify({ error: String(e.message || e) }));
  process.exit(1);
}
