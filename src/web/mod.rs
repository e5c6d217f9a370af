//! The wasm-bindgen surface: thin. It converts types, turns every error into a JS `Error`
//! whose `name` says its kind, and never lets a Rust panic be the way a bad input is reported.

use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

use crate::diffusion::request::{GenerateRequest, TrainRequest};
use crate::diffusion::{Ranked, Session, Trainer};
use crate::error::Error;
use crate::model::gguf::WeightDtype;
use crate::Model;

/// A JS `Error` with `name` set to the error's kind (`OptionsError`, `ModelError`, ...).
fn js_err(e: Error) -> JsValue {
    let err = js_sys::Error::new(&e.to_string());
    err.set_name(e.kind());
    err.into()
}

fn to_js<T: Serialize>(v: &T) -> Result<JsValue, JsValue> {
    let ser = serde_wasm_bindgen::Serializer::new().serialize_maps_as_objects(true);
    v.serialize(&ser).map_err(|e| js_err(Error::input(e.to_string())))
}

fn from_js<T: for<'de> Deserialize<'de>>(v: JsValue, what: &str) -> Result<T, JsValue> {
    serde_wasm_bindgen::from_value(v).map_err(|e| js_err(Error::options(format!("{what}: {e}"))))
}

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

/// Every option the package takes, from their one definition (`crate::options`): sampling,
/// training, and the learning rate each training mode defaults to.
#[wasm_bindgen(js_name = optionSpecs)]
pub fn option_specs() -> Result<JsValue, JsValue> {
    use crate::diffusion::trainer::{FINETUNE_LR, SCRATCH_LR};
    use crate::diffusion::{SampleOptions, TrainOptions};
    use crate::options::OptionSet;
    let specs = serde_json::json!({
        "sampling": SampleOptions::specs(),
        "training": TrainOptions::specs(),
        "modeLr": { "finetune": FINETUNE_LR, "scratch": SCRATCH_LR },
    });
    // `null` defaults stay `null` (not `undefined`): they mean "off unless given".
    let ser = serde_wasm_bindgen::Serializer::new().serialize_maps_as_objects(true).serialize_missing_as_null(true);
    specs.serialize(&ser).map_err(|e| js_err(Error::input(e.to_string())))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CanvasOut {
    ids: Vec<u32>,
    fixed: Vec<bool>,
    pieces: Vec<String>,
    total: usize,
    masked: usize,
    mask_id: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    id: u32,
    piece: String,
    p: f32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StepOut {
    step: usize,
    total: usize,
    ids: Vec<u32>,
    revealed: Vec<usize>,
    revealed_pieces: Vec<String>,
    confidence: Vec<f32>,
    candidates: Vec<Vec<Candidate>>,
    masked: usize,
    done: bool,
}

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
}

#[wasm_bindgen]
pub struct Engine {
    model: Model,
    session: Option<Session>,
    trainer: Option<Trainer>,
    /// The model's weights on the GPU, when WebGPU is in use. An `Rc` so a pending
    /// readback (a JS promise) can hold it while JS keeps calling in.
    #[cfg(feature = "webgpu")]
    gpu: Option<std::rc::Rc<crate::backend::webgpu::GpuEncoder>>,
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
            model,
            session: None,
            trainer: None,
            #[cfg(feature = "webgpu")]
            gpu: None,
        })
    }

    pub fn info(&self) -> Result<JsValue, JsValue> {
        to_js(&self.model.info())
    }

    /// Starts a generation; returns the initial canvas.
    pub fn begin(&mut self, request: JsValue) -> Result<JsValue, JsValue> {
        self.session = None;
        let req: GenerateRequest = from_js(request, "generation request")?;
        let session = req.into_session(&self.model).map_err(js_err)?;
        let codec = &self.model.codec;
        let c = session.canvas();
        let out = CanvasOut {
            ids: c.ids.clone(),
            fixed: c.fixed.clone(),
            pieces: c.ids.iter().map(|&i| codec.piece(i)).collect(),
            total: session.total(),
            masked: c.masked().len(),
            mask_id: c.mask_id,
        };
        self.session = Some(session);
        to_js(&out)
    }

    /// Runs one denoising step; returns `null` when the canvas is complete or no generation
    /// is running.
    pub fn step(&mut self) -> Result<JsValue, JsValue> {
        let Some(session) = self.session.as_mut() else { return Ok(JsValue::NULL) };
        let step = match session.step(&self.model) {
            Ok(Some(s)) => s,
            Ok(None) => {
                self.session = None;
                return Ok(JsValue::NULL);
            }
            Err(e) => {
                self.session = None;
                return Err(js_err(e));
            }
        };
        self.step_out(step)
    }

    fn step_out(&mut self, step: crate::diffusion::Step) -> Result<JsValue, JsValue> {
        let codec = &self.model.codec;
        let out = StepOut {
            step: step.step,
            total: step.total,
            revealed_pieces: step.revealed.iter().map(|&p| codec.piece(step.ids[p])).collect(),
            candidates: step
                .candidates
                .iter()
                .map(|cs| cs.iter().map(|&(id, p)| Candidate { id, piece: codec.piece(id), p }).collect())
                .collect(),
            ids: step.ids,
            revealed: step.revealed,
            confidence: step.confidence,
            masked: step.masked,
            done: step.done,
        };
        if out.done {
            self.session = None;
        }
        to_js(&out)
    }

    /// Moves this model's weights onto `device`; steps then run through
    /// `stepPositions` → `gpuLogits` → `stepCommit`.
    #[cfg(feature = "webgpu")]
    #[wasm_bindgen(js_name = attachGpu)]
    pub fn attach_gpu(&mut self, device: &mut GpuDevice) -> Result<(), JsValue> {
        let gpu = device.0.take().ok_or_else(|| js_err(Error::Device("this GPU device is already in use".into())))?;
        let enc = crate::backend::webgpu::GpuEncoder::new(gpu, &self.model.encoder, Some(&self.model.store)).map_err(js_err)?;
        self.gpu = Some(std::rc::Rc::new(enc));
        Ok(())
    }

    /// The canvas positions the next step needs logits for, or `null` when the generation is
    /// complete (the first half of a step, for the asynchronous GPU path).
    #[wasm_bindgen(js_name = stepPositions)]
    pub fn step_positions(&mut self) -> Option<Vec<u32>> {
        let session = self.session.as_mut()?;
        match session.next_positions() {
            Some(p) => Some(p.into_iter().map(|x| x as u32).collect()),
            None => {
                self.session = None;
                None
            }
        }
    }

    /// The current canvas' token ids.
    #[wasm_bindgen(js_name = canvasIds)]
    pub fn canvas_ids(&self) -> Vec<u32> {
        self.session.as_ref().map(|s| s.canvas().ids.clone()).unwrap_or_default()
    }

    /// The running step's scores from the GPU, as raw words (resolves to a `Uint32Array`):
    /// when the generation's top-k allows (1–256), each row's ranked head, ranked on the GPU
    /// (`2k + 1` words per row; see `Ranked::to_words`), otherwise the whole logit rows
    /// `[positions × vocab]` as f32 bits. Pass them to `stepCommit`.
    #[cfg(feature = "webgpu")]
    #[wasm_bindgen(js_name = gpuScores)]
    pub fn gpu_scores(&self, ids: Vec<u32>, positions: Vec<u32>) -> Result<js_sys::Promise, JsValue> {
        let gpu = self.gpu.clone().ok_or_else(|| js_err(Error::Device("no GPU is attached".into())))?;
        let session = self.session.as_ref().ok_or_else(|| js_err(Error::input("no generation is running")))?;
        let scoring = session.scoring();
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            let positions: Vec<usize> = positions.into_iter().map(|p| p as usize).collect();
            let words: Vec<u32> = match scoring {
                Some(s) => gpu.ranked_at(&ids, &positions, &s).await.map_err(js_err)?.to_words(),
                None => gpu.logits_at(&ids, &positions).await.map_err(js_err)?.iter().map(|v| v.to_bits()).collect(),
            };
            Ok(js_sys::Uint32Array::from(words.as_slice()).into())
        }))
    }

    /// The second half of a step: commits from the words `gpuScores` gave and returns the
    /// step.
    #[wasm_bindgen(js_name = stepCommit)]
    pub fn step_commit(&mut self, words: Vec<u32>) -> Result<JsValue, JsValue> {
        let vocab = self.model.config().vocab_size;
        let session = self.session.as_mut().ok_or_else(|| js_err(Error::input("no generation is running")))?;
        let committed = match session.ranked_k() {
            Some(k) => match Ranked::from_words(&words, k.min(vocab)) {
                Some(r) => session.commit_ranked(&r, vocab),
                None => Err(Error::model("the GPU returned a ranking of the wrong size")),
            },
            None => session.commit(&words.iter().map(|&b| f32::from_bits(b)).collect::<Vec<_>>(), vocab),
        };
        let step = match committed {
            Ok(s) => s,
            Err(e) => {
                self.session = None;
                return Err(js_err(e));
            }
        };
        self.step_out(step)
    }

    /// Drops the running generation, if any.
    pub fn cancel(&mut self) {
        self.session = None;
    }

    /// Logits `[positions × vocab]` (row-major) for one sequence.
    pub fn logits(&self, ids: Vec<u32>, positions: Vec<u32>) -> Result<Vec<f32>, JsValue> {
        let positions: Vec<usize> = positions.into_iter().map(|p| p as usize).collect();
        self.model.logits_at(&ids, &positions).map_err(js_err)
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
        let trainer = req.into_trainer(&self.model, corpus).map_err(js_err)?;
        let c = trainer.corpus();
        let out = TrainStart {
            parameters: trainer.parameter_count(),
            documents: c.documents,
            train_tokens: c.train.len(),
            valid_tokens: c.valid.len(),
            held_out: c.held_out,
            estimated_bytes: crate::diffusion::trainer::estimate_bytes(&trainer.config, &trainer.options),
        };
        self.trainer = Some(trainer);
        to_js(&out)
    }

    /// One optimizer step: `{step, loss, objective, lr, gradNorm, tokens}`.
    #[wasm_bindgen(js_name = trainStep)]
    pub fn train_step(&mut self) -> Result<JsValue, JsValue> {
        let t = self.trainer.as_mut().ok_or_else(|| js_err(Error::Training("no training run".into())))?;
        to_js(&t.step().map_err(js_err)?)
    }

    /// Held-out ELBO perplexity of the current weights.
    #[wasm_bindgen(js_name = trainEvaluate)]
    pub fn train_evaluate(&self) -> Result<JsValue, JsValue> {
        let t = self.trainer.as_ref().ok_or_else(|| js_err(Error::Training("no training run".into())))?;
        to_js(&t.evaluate().map_err(js_err)?)
    }

    /// Makes the current training weights the model that generates; returns its info.
    #[wasm_bindgen(js_name = trainAdopt)]
    pub fn train_adopt(&mut self) -> Result<JsValue, JsValue> {
        let t = self.trainer.as_ref().ok_or_else(|| js_err(Error::Training("no training run".into())))?;
        self.session = None;
        self.model = t.snapshot().map_err(js_err)?;
        // The GPU copy of the weights follows the trained model (re-uploaded on the same device).
        #[cfg(feature = "webgpu")]
        if let Some(rc) = self.gpu.take() {
            if let Ok(old) = std::rc::Rc::try_unwrap(rc) {
                let enc = crate::backend::webgpu::GpuEncoder::new(old.into_gpu(), &self.model.encoder, Some(&self.model.store))
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
