//! The wasm-bindgen surface: thin. It converts types, turns every error into a JS `Error`
//! whose `name` says its kind, and never lets a Rust panic be the way a bad input is reported.

use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

use crate::diffusion::request::{GenerateRequest, TrainRequest};
use crate::diffusion::{Session, Trainer};
use crate::error::Error;
use crate::model::gguf::WeightDtype;
use crate::Model;

#[cfg(target_feature = "atomics")]
mod pool;

/// A JS `Error` with `name` set to the error's kind (`OptionsError`, `ModelError`, ...).
fn js_err(e: Error) -> JsValue {
    let err = js_sys::Error::new(&e.to_string());
    err.set_name(e.kind());
    err.into()
}

/// A promise of `f`'s result. Work that never waits (a CPU step) runs now, inside the call,
/// so a trap surfaces in the caller like any synchronous one; only GPU work needs an executor.
fn promise(f: impl std::future::Future<Output = Result<JsValue, JsValue>> + 'static, waits: bool) -> js_sys::Promise {
    #[cfg(feature = "webgpu")]
    if waits {
        return wasm_bindgen_futures::future_to_promise(f);
    }
    let _ = waits;
    match crate::diffusion::sampler::ready(f) {
        Ok(v) => js_sys::Promise::resolve(&v),
        Err(e) => js_sys::Promise::reject(&e),
    }
}

fn to_js<T: Serialize>(v: &T) -> Result<JsValue, JsValue> {
    let ser = serde_wasm_bindgen::Serializer::new().serialize_maps_as_objects(true);
    v.serialize(&ser).map_err(|e| js_err(Error::input(e.to_string())))
}

/// The error of a training call made with no run begun.
fn no_run() -> JsValue {
    js_err(Error::Training("no training run".into()))
}

fn from_js<T: for<'de> Deserialize<'de>>(v: JsValue, what: &str) -> Result<T, JsValue> {
    serde_wasm_bindgen::from_value(v).map_err(|e| js_err(Error::options(format!("{what}: {e}"))))
}

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

/// Threads the kernels run on: the pool's size in the threaded build, 1 in the others.
#[wasm_bindgen]
pub fn threads() -> usize {
    crate::backend::par::threads()
}

/// Every option the package takes, from their one definition (`crate::options`): sampling,
/// training, and the learning rate each training mode and method defaults to.
#[wasm_bindgen(js_name = optionSpecs)]
pub fn option_specs() -> Result<JsValue, JsValue> {
    use crate::diffusion::finetune::Method;
    use crate::diffusion::trainer::default_lr;
    use crate::diffusion::{SampleOptions, TrainOptions};
    use crate::options::OptionSet;
    let specs = serde_json::json!({
        "sampling": SampleOptions::specs(),
        "training": TrainOptions::specs(),
        "defaultLr": {
            "scratch": default_lr(true, Method::Full),
            "lora": default_lr(false, Method::Lora),
            "top": default_lr(false, Method::Top),
            "full": default_lr(false, Method::Full),
        },
        "defaultLayers": crate::diffusion::finetune::DEFAULT_LAYERS,
        "trainStart": TrainOptions::demo_start(),
        "presets": SampleOptions::presets().into_iter().map(|(name, options)| serde_json::json!({ "name": name, "options": crate::options::to_json(&options) })).collect::<Vec<_>>(),
    });
    // `null` defaults stay `null` (not `undefined`): they mean "off unless given".
    let ser = serde_wasm_bindgen::Serializer::new().serialize_maps_as_objects(true).serialize_missing_as_null(true);
    specs.serialize(&ser).map_err(|e| js_err(Error::input(e.to_string())))
}

/// The canvas as the package and the demo show it: before the first step and after each.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CanvasOut {
    ids: Vec<u32>,
    fixed: Vec<bool>,
    pieces: Vec<String>,
    /// For people: special tokens dropped, masks drawn as the request's `mask`.
    text: String,
    total: usize,
    masked: usize,
    mask_id: u32,
}

impl CanvasOut {
    fn of(codec: &crate::model::TextCodec, g: &Generation) -> Self {
        let c = g.session.canvas();
        CanvasOut {
            ids: c.ids.clone(),
            fixed: c.fixed.clone(),
            pieces: c.ids.iter().map(|&i| codec.piece(i)).collect(),
            text: codec.render(&c.ids, &g.mask),
            total: g.session.total(),
            masked: c.masked().len(),
            mask_id: c.mask_id,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    id: u32,
    piece: String,
    p: f32,
}

/// One step: what it revealed, and the whole canvas after it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StepOut {
    step: usize,
    revealed: Vec<usize>,
    confidence: Vec<f32>,
    candidates: Vec<Vec<Candidate>>,
    redrawn: Vec<usize>,
    done: bool,
    #[serde(flatten)]
    canvas: CanvasOut,
}

/// A generation in progress, and how its text draws masks.
struct Generation {
    session: Session,
    mask: String,
    /// Which `begin` this is: a step that finishes after a newer `begin` or a `cancel` is
    /// dropped instead of put back.
    id: u64,
}

/// The running generation, shared with a step that awaits the GPU.
type Slot = std::rc::Rc<std::cell::RefCell<Option<Generation>>>;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TrainStart {
    parameters: usize,
    documents: usize,
    train_tokens: usize,
    valid_tokens: usize,
    held_out: bool,
    /// The trainer's estimate of the run's memory (it refuses runs over the wasm budget).
    estimated_bytes: u64,
    /// Steps the run is for (its options resolved: a time budget alone makes them many).
    steps: usize,
    /// The time budget, if any (seconds).
    seconds: Option<f64>,
    /// What the run's samples continue by default ([`crate::diffusion::corpus::Corpus::sample_prompt`]).
    sample_prompt: String,
    /// The loaded model's evaluation, for a run that keeps its best weights (the loaded
    /// model's are the first candidate); `None` otherwise.
    eval: Option<crate::diffusion::trainer::EvalReport>,
}

#[wasm_bindgen]
pub struct Engine {
    model: std::rc::Rc<Model>,
    generation: Slot,
    /// How many generations were begun or cancelled: the id of the current one.
    begun: std::rc::Rc<std::cell::Cell<u64>>,
    trainer: Option<Trainer>,
    /// The adapters the model was last fine-tuned with or given (`exportAdapters`).
    adapters: Option<crate::model::adapters::Adapters>,
    /// The model's weights on the GPU, when WebGPU is in use. An `Rc` so a pending
    /// readback (a JS promise) can hold it while JS keeps calling in.
    #[cfg(feature = "webgpu")]
    gpu: Option<std::rc::Rc<crate::model::GpuEncoder>>,
}

/// A WebGPU device with the kernels compiled, waiting to be attached to an engine.
#[cfg(feature = "webgpu")]
#[wasm_bindgen]
pub struct GpuDevice(Option<crate::backend::webgpu::Gpu>);

/// Opens the page's WebGPU adapter and compiles the kernels (the `compile` phase of loading).
#[cfg(feature = "webgpu")]
#[wasm_bindgen(js_name = webgpuInit)]
pub fn webgpu_init() -> js_sys::Promise {
    wasm_bindgen_futures::future_to_promise(async {
        let gpu = crate::backend::webgpu::Gpu::new().await.map_err(js_err)?;
        Ok(JsValue::from(GpuDevice(Some(gpu))))
    })
}

#[wasm_bindgen]
impl Engine {
    /// Loads a GGUF file written by `unmask convert`.
    #[wasm_bindgen(constructor)]
    pub fn new(bytes: &[u8]) -> Result<Engine, JsValue> {
        let model = Model::from_gguf_bytes(bytes).map_err(js_err)?;
        Ok(Engine {
            model: std::rc::Rc::new(model),
            generation: Slot::default(),
            begun: Default::default(),
            trainer: None,
            adapters: None,
            #[cfg(feature = "webgpu")]
            gpu: None,
        })
    }

    pub fn info(&self) -> Result<JsValue, JsValue> {
        to_js(&self.model.info())
    }

    /// Starts a generation; returns the initial canvas. `mask` is how masks read in the
    /// canvas' `text` (default `[MASK]`).
    pub fn begin(&mut self, request: JsValue, mask: Option<String>) -> Result<JsValue, JsValue> {
        self.cancel();
        let req: GenerateRequest = from_js(request, "generation request")?;
        let session = req.into_session(&self.model).map_err(js_err)?;
        self.begun.set(self.begun.get() + 1);
        let g = Generation { session, mask: mask.unwrap_or_else(|| "[MASK]".into()), id: self.begun.get() };
        let out = CanvasOut::of(&self.model.codec, &g);
        *self.generation.borrow_mut() = Some(g);
        to_js(&out)
    }

    /// Runs one denoising step of the running generation: resolves to the step (with the
    /// canvas after it), or `null` when it is complete or none is running. On WebGPU the step
    /// awaits the GPU's readback (each row's top-k, ranked there) here, in Rust.
    pub fn step(&mut self) -> js_sys::Promise {
        let (slot, model, latest) = (self.generation.clone(), self.model.clone(), self.begun.clone());
        #[cfg(feature = "webgpu")]
        let gpu = self.gpu.clone();
        #[cfg(feature = "webgpu")]
        let waits = gpu.is_some();
        #[cfg(not(feature = "webgpu"))]
        let waits = false;
        promise(async move {
            // Out of the slot while it runs: a `begin` or `cancel` meanwhile wins.
            let Some(mut g) = slot.borrow_mut().take() else { return Ok(JsValue::NULL) };
            #[cfg(feature = "webgpu")]
            let step = match &gpu {
                Some(gpu) => g.session.step_async(&**gpu).await,
                None => g.session.step(&*model),
            };
            #[cfg(not(feature = "webgpu"))]
            let step = g.session.step(&*model);
            let step = match step.map_err(js_err)? {
                Some(s) => s,
                None => return Ok(JsValue::NULL),
            };
            let codec = &model.codec;
            let out = StepOut {
                step: step.step,
                candidates: step
                    .candidates
                    .iter()
                    .map(|cs| cs.iter().map(|&(id, p)| Candidate { id, piece: codec.piece(id), p }).collect())
                    .collect(),
                revealed: step.revealed,
                redrawn: step.redrawn,
                confidence: step.confidence,
                done: step.done,
                canvas: CanvasOut::of(codec, &g),
            };
            if !out.done && latest.get() == g.id {
                *slot.borrow_mut() = Some(g);
            }
            to_js(&out)
        }, waits)
    }

    /// Moves this model's weights onto `device`; generation steps then run on the GPU.
    #[cfg(feature = "webgpu")]
    #[wasm_bindgen(js_name = attachGpu)]
    pub fn attach_gpu(&mut self, device: &mut GpuDevice) -> Result<(), JsValue> {
        let gpu = device.0.take().ok_or_else(|| js_err(Error::Device("this GPU device is already in use".into())))?;
        let enc = crate::model::GpuEncoder::new(gpu, &self.model.encoder).map_err(js_err)?;
        self.gpu = Some(std::rc::Rc::new(enc));
        Ok(())
    }

    /// Runs the first step of a default generation (the request's default length after a
    /// one-word prompt) on the GPU (`gpu`, when attached) or the CPU, touching no running
    /// generation: the loader times it on both to choose the device (`deviceTimings`).
    #[cfg(feature = "webgpu")]
    #[wasm_bindgen(js_name = probeStep)]
    pub fn probe_step(&self, gpu: bool) -> js_sys::Promise {
        let (model, enc) = (self.model.clone(), if gpu { self.gpu.clone() } else { None });
        let waits = enc.is_some();
        promise(async move {
            let req = GenerateRequest { prompt: Some("the".into()), ..Default::default() };
            let mut session = req.into_session(&model).map_err(js_err)?;
            match &enc {
                Some(enc) => session.step_async(&**enc).await,
                None => session.step(&*model),
            }
            .map_err(js_err)?;
            Ok(JsValue::NULL)
        }, waits)
    }

    /// Drops the GPU copy of the weights: steps run on the CPU again.
    #[cfg(feature = "webgpu")]
    #[wasm_bindgen(js_name = detachGpu)]
    pub fn detach_gpu(&mut self) {
        self.cancel();
        self.gpu = None;
    }

    /// Drops the running generation, if any.
    pub fn cancel(&mut self) {
        self.begun.set(self.begun.get() + 1);
        *self.generation.borrow_mut() = None;
    }

    /// Logits `[positions × vocab]` (row-major) for one sequence, copied once: from where the
    /// forward wrote them into JS memory.
    pub fn logits(&self, ids: Vec<u32>, positions: Vec<u32>) -> Result<js_sys::Float32Array, JsValue> {
        let positions: Vec<usize> = positions.into_iter().map(|p| p as usize).collect();
        self.model.logits_with(&ids, &positions, |l| js_sys::Float32Array::from(l)).map_err(js_err)
    }

    pub fn encode(&self, text: &str) -> Result<Vec<u32>, JsValue> {
        self.model.codec.encode(text).map_err(js_err)
    }

    pub fn decode(&self, ids: Vec<u32>) -> String {
        self.model.codec.decode(&ids)
    }

    /// Text for people: special tokens dropped, masks drawn as `mask`.
    pub fn render(&self, ids: Vec<u32>, mask: &str) -> String {
        self.model.codec.render(&ids, mask)
    }

    /// The model as a GGUF file (`f32`, `f16`, `q8_0`, `q4_k`).
    #[wasm_bindgen(js_name = exportGguf)]
    pub fn export_gguf(&self, dtype: &str) -> Result<Vec<u8>, JsValue> {
        let dtype: WeightDtype = dtype.parse().map_err(js_err)?;
        let mut c = std::io::Cursor::new(Vec::new());
        self.model.write_gguf(&mut c, dtype).map_err(js_err)?;
        Ok(c.into_inner())
    }

    /// The model's weights as `model.safetensors` bytes (f32, Hugging Face names).
    #[wasm_bindgen(js_name = exportSafetensors)]
    pub fn export_safetensors(&self) -> Result<Vec<u8>, JsValue> {
        let tensors = crate::model::gguf::sorted_dense(&self.model.store).map_err(js_err)?;
        crate::model::weights::serialize(&tensors).map_err(js_err)
    }

    /// Prepares a training run on `corpus` (blank lines separate documents).
    #[wasm_bindgen(js_name = trainBegin)]
    pub fn train_begin(&mut self, corpus: &str, request: JsValue) -> Result<JsValue, JsValue> {
        self.trainer = None;
        let req: TrainRequest = from_js(request, "training request")?;
        let mut trainer = req.into_trainer(&self.model, corpus).map_err(js_err)?;
        let keeps_best = trainer.options.keep == Some(crate::diffusion::trainer::Keep::Best);
        let eval = if keeps_best { Some(trainer.evaluate_and_track().map_err(js_err)?) } else { None };
        let c = trainer.corpus();
        let out = TrainStart {
            parameters: trainer.parameter_count(),
            documents: c.documents,
            train_tokens: c.train.len(),
            valid_tokens: c.valid.len(),
            held_out: c.held_out,
            estimated_bytes: crate::diffusion::trainer::estimate_bytes(&trainer.config, &trainer.options),
            steps: trainer.options.steps,
            seconds: trainer.options.seconds,
            sample_prompt: c.sample_prompt.clone(),
            eval,
        };
        self.trainer = Some(trainer);
        to_js(&out)
    }

    /// One optimizer step, `elapsed` seconds into the run (for a time budget's schedule):
    /// `{step, loss, objective, lr, gradNorm, tokens}`.
    #[wasm_bindgen(js_name = trainStep)]
    pub fn train_step(&mut self, elapsed: f64) -> Result<JsValue, JsValue> {
        let t = self.trainer.as_mut().ok_or_else(no_run)?;
        t.set_elapsed(elapsed);
        to_js(&t.step().map_err(js_err)?)
    }

    /// A sample of the run's weights as they are now (before its first step, the loaded
    /// model's), drawn the way the run's samples are ([`Trainer::sample_options`]). The model
    /// that generates stays as it is: a run hands its weights over when it ends (`trainAdopt`),
    /// or not at all (`adopt: false`).
    #[wasm_bindgen(js_name = trainSample)]
    pub fn train_sample(&self, prompt: &str, length: usize) -> Result<String, JsValue> {
        let t = self.trainer.as_ref().ok_or_else(no_run)?;
        let trained;
        let model = match t.step {
            0 => &*self.model,
            _ => {
                trained = t.snapshot().map_err(js_err)?;
                &trained
            }
        };
        let req = GenerateRequest::sample(prompt, length, &t.sample_options());
        let session = req.into_session(model).map_err(js_err)?;
        let out = crate::diffusion::run(model, session, |_| true).map_err(js_err)?;
        Ok(model.codec.render(&out.canvas.ids, "[MASK]"))
    }

    /// Held-out ELBO perplexity of the current weights (a run that keeps its best weights
    /// remembers them if they are the best so far).
    #[wasm_bindgen(js_name = trainEvaluate)]
    pub fn train_evaluate(&mut self) -> Result<JsValue, JsValue> {
        let t = self.trainer.as_mut().ok_or_else(no_run)?;
        to_js(&t.evaluate_and_track().map_err(js_err)?)
    }

    /// Puts the weights the run ends with in place (`keep`): `{step, elboPerplexity}`.
    #[wasm_bindgen(js_name = trainKeep)]
    pub fn train_keep(&mut self) -> Result<JsValue, JsValue> {
        let t = self.trainer.as_mut().ok_or_else(no_run)?;
        to_js(&t.keep().map_err(js_err)?)
    }

    /// Makes the current training weights the model that generates; returns its info.
    #[wasm_bindgen(js_name = trainAdopt)]
    pub fn train_adopt(&mut self) -> Result<JsValue, JsValue> {
        let t = self.trainer.as_ref().ok_or_else(no_run)?;
        let model = t.snapshot().map_err(js_err)?;
        let adapters = t.adapters().map_err(js_err)?;
        self.adopt(model, adapters)
    }

    /// The LoRA adapters of the last fine-tune (or loaded with `loadAdapters`) as a small GGUF
    /// that loads on top of the model they were trained on.
    #[wasm_bindgen(js_name = exportAdapters)]
    pub fn export_adapters(&self) -> Result<Vec<u8>, JsValue> {
        let a = self.adapters.as_ref().ok_or_else(|| {
            js_err(Error::options("exportAdapters: this model has no trained adapters (fine-tune it with method 'lora' first)"))
        })?;
        a.to_gguf().map_err(js_err)
    }

    /// Merges an adapters file into the model it was trained on; returns the new model's info.
    #[wasm_bindgen(js_name = loadAdapters)]
    pub fn load_adapters(&mut self, bytes: &[u8]) -> Result<JsValue, JsValue> {
        let adapters = crate::model::adapters::Adapters::from_gguf(bytes).map_err(js_err)?;
        let model = adapters.merge_into(&self.model).map_err(js_err)?;
        self.adopt(model, Some(adapters))
    }

    /// Makes `model` the one that generates.
    fn adopt(&mut self, model: Model, adapters: Option<crate::model::adapters::Adapters>) -> Result<JsValue, JsValue> {
        self.cancel();
        self.model = std::rc::Rc::new(model);
        self.adapters = adapters;
        // The GPU copy of the weights follows the trained model (re-uploaded on the same device).
        #[cfg(feature = "webgpu")]
        if let Some(rc) = self.gpu.take() {
            if let Ok(old) = std::rc::Rc::try_unwrap(rc) {
                let enc = crate::model::GpuEncoder::new(old.into_gpu(), &self.model.encoder)
                    .map_err(js_err)?;
                self.gpu = Some(std::rc::Rc::new(enc));
            }
        }
        self.info()
    }

    /// Panics on purpose: the tests use it to check that a Rust panic reaches JS as a typed
    /// error and the instance is marked unusable, not left computing on broken memory.
    #[wasm_bindgen(js_name = faultForTesting)]
    pub fn fault_for_testing(&self) {
        panic!("deliberate fault for testing");
    }

    /// Ends the training run and frees its memory.
    #[wasm_bindgen(js_name = trainEnd)]
    pub fn train_end(&mut self) {
        self.trainer = None;
    }
}
