//! The WebGPU backend: the [`super::Ops`] of a forward pass as WGSL compute kernels through
//! `wgpu` (natively on Vulkan — Mesa's lavapipe in CI — and, compiled to wasm32, on the
//! browser's WebGPU). The CPU backend stays the reference: every kernel and the whole forward
//! are tested against it (`tests/webgpu.rs`).
//!
//! One forward pass is one command submission ([`Pass`]); weights are uploaded once per model
//! and only what the caller asks for (logits, or each row's ranked head) is read back.

pub mod kernels;
mod ops;

pub use kernels::Kernel;

use std::collections::HashMap;

use wgpu::util::DeviceExt;

pub use ops::{ranked_k, split_k, GpuEmbeddings, GpuLinear, GpuNorm, GpuOps, Pass, Rows, SPLIT_TARGET};

use crate::error::{Error, Result};

/// A device with the compiled kernels.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pipelines: HashMap<&'static str, wgpu::ComputePipeline>,
    /// The adapter's name, e.g. `llvmpipe (LLVM 15.0.6, 256 bits)`.
    pub adapter: String,
    pub max_buffer: u64,
    uniform_align: u32,
    /// What kind of adapter it is (software rasterisers report `Cpu`).
    pub device_type: wgpu::DeviceType,
}

fn gpu_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Device(format!("{what}: {e}"))
}

impl Gpu {
    /// Finds an adapter and compiles the kernels.
    pub async fn new() -> Result<Self> {
        let instance = wgpu::Instance::default();
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions::default())
            .await
            .map_err(|e| gpu_err("no WebGPU adapter", e))?;
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("unmask"),
                required_features: wgpu::Features::empty(),
                // The adapter's own limits: large models need big storage buffers.
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| gpu_err("cannot open the WebGPU device", e))?;
        let mut pipelines = HashMap::new();
        for &(name, source) in kernels::ALL {
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(name),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            });
            let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(name),
                layout: None,
                module: &module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            });
            pipelines.insert(name, pipeline);
        }
        let info = adapter.get_info();
        Ok(Self {
            device,
            queue,
            pipelines,
            adapter: format!("{} ({:?})", info.name, info.backend),
            max_buffer: limits.max_storage_buffer_binding_size as u64,
            uniform_align: limits.min_uniform_buffer_offset_alignment,
            device_type: info.device_type,
        })
    }

    /// [`Gpu::new`] for native callers.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_blocking() -> Result<Self> {
        pollster::block_on(Self::new())
    }

    pub fn upload(&self, label: &str, data: &[f32]) -> wgpu::Buffer {
        // Zero-length bindings are invalid: keep one float.
        let data: &[f32] = if data.is_empty() { &[0.0] } else { data };
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::cast_slice(data),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        })
    }

    pub fn upload_u32(&self, label: &str, data: &[u32]) -> wgpu::Buffer {
        let data: &[u32] = if data.is_empty() { &[0] } else { data };
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::cast_slice(data),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        })
    }

    /// A scratch buffer of `floats` f32.
    pub fn scratch(&self, label: &str, floats: usize) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (floats.max(1) * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Records one launch of the kernel `K`: `params` bind to its uniform, `buffers` to 1, 2, …
    /// in order. Nothing reaches the GPU until [`Gpu::read`] encodes the whole recording.
    pub fn dispatch<K: Kernel>(&self, rec: &mut Recorder, params: K, buffers: &[&wgpu::Buffer], groups: impl Into<Groups>) {
        let Groups(g) = groups.into();
        let mut bytes = [0u8; kernels::PARAMS_BYTES];
        bytes[..std::mem::size_of::<K>()].copy_from_slice(bytemuck::bytes_of(&params));
        rec.launches.push(Launch { kernel: K::NAME, buffers: buffers.iter().map(|&b| b.clone()).collect(), params: bytes, groups: g.map(|v| v.max(1)) });
    }

    /// Encodes a recording: every launch's parameters in one uniform buffer (one slot per
    /// launch, at the device's offset alignment) and every launch in one compute pass, where
    /// wgpu orders a dispatch after the ones whose outputs it reads. One pass and one buffer
    /// instead of one of each per launch: ~65 launches make a forward.
    fn encode(&self, rec: Recorder) -> wgpu::CommandEncoder {
        let mut enc = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("forward") });
        if rec.launches.is_empty() {
            return enc;
        }
        let stride = (self.uniform_align as usize).max(kernels::PARAMS_BYTES);
        let mut bytes = vec![0u8; stride * rec.launches.len()];
        for (i, l) in rec.launches.iter().enumerate() {
            bytes[i * stride..i * stride + kernels::PARAMS_BYTES].copy_from_slice(&l.params);
        }
        let uniform = self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("params"),
            contents: &bytes,
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let binds: Vec<wgpu::BindGroup> = rec
            .launches
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let params = wgpu::BufferBinding { buffer: &uniform, offset: (i * stride) as u64, size: wgpu::BufferSize::new(kernels::PARAMS_BYTES as u64) };
                let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: wgpu::BindingResource::Buffer(params) }];
                for (j, b) in l.buffers.iter().enumerate() {
                    entries.push(wgpu::BindGroupEntry { binding: j as u32 + 1, resource: b.as_entire_binding() });
                }
                self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(l.kernel),
                    layout: &self.pipelines[l.kernel].get_bind_group_layout(0),
                    entries: &entries,
                })
            })
            .collect();
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("forward"), timestamp_writes: None });
            for (l, bind) in rec.launches.iter().zip(&binds) {
                pass.set_pipeline(&self.pipelines[l.kernel]);
                pass.set_bind_group(0, bind, &[]);
                pass.dispatch_workgroups(l.groups[0], l.groups[1], l.groups[2]);
            }
        }
        enc
    }

    /// Workgroups for `n` elements in groups of 64, folded into y past the 65,535 limit of x.
    pub fn groups_for(n: usize) -> (u32, u32) {
        Self::groups_for_rows(n.div_ceil(64))
    }

    /// One workgroup per row, folded into y past the 65,535 limit of x (kernels index the
    /// row as `wid.x + wid.y · 65535`).
    pub fn groups_for_rows(rows: usize) -> (u32, u32) {
        let g = rows as u32;
        if g <= 65_535 {
            (g, 1)
        } else {
            (65_535, g.div_ceil(65_535))
        }
    }

    /// Copies `floats` f32 from `buf` to the CPU after running the work recorded in `rec`
    /// (one submission).
    pub async fn read(&self, rec: Recorder, buf: &wgpu::Buffer, floats: usize) -> Result<Vec<f32>> {
        let mut enc = self.encode(rec);
        let size = (floats.max(1) * 4) as u64;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        enc.copy_buffer_to_buffer(buf, 0, &staging, 0, size);
        self.queue.submit([enc.finish()]);
        let (tx, rx) = futures_oneshot();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| tx.send(r));
        #[cfg(not(target_arch = "wasm32"))]
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| gpu_err("GPU wait failed", e))?;
        rx.await.map_err(|e| gpu_err("reading back from the GPU failed", format!("{e:?}")))?;
        let view = staging.slice(..).get_mapped_range().map_err(|e| gpu_err("mapping the readback buffer", format!("{e:?}")))?;
        let out: Vec<f32> = view.chunks_exact(4).take(floats).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        drop(view);
        staging.unmap();
        Ok(out)
    }

    /// An empty recording of launches for one submission.
    pub fn encoder(&self) -> Recorder {
        Recorder::default()
    }
}

/// The launches of one submission, in order (see [`Gpu::dispatch`], [`Gpu::read`]).
#[derive(Default)]
pub struct Recorder {
    launches: Vec<Launch>,
}

impl Recorder {
    /// How many launches are recorded (for tests and benchmarks).
    pub fn launches(&self) -> usize {
        self.launches.len()
    }
}

struct Launch {
    kernel: &'static str,
    buffers: Vec<wgpu::Buffer>,
    params: [u8; kernels::PARAMS_BYTES],
    groups: [u32; 3],
}

/// Workgroup counts of a launch: `(x, y)` or `(x, y, z)`.
pub struct Groups(pub [u32; 3]);

impl From<(u32, u32)> for Groups {
    fn from((x, y): (u32, u32)) -> Self {
        Groups([x, y, 1])
    }
}

impl From<(u32, u32, u32)> for Groups {
    fn from((x, y, z): (u32, u32, u32)) -> Self {
        Groups([x, y, z])
    }
}

/// A one-shot channel whose receiver is a future (the map callback may run on another
/// thread natively, or from the browser's event loop in wasm).
fn futures_oneshot<T: Send + 'static>() -> (OneshotTx<T>, OneshotRx<T>) {
    let shared = std::sync::Arc::new(std::sync::Mutex::new(OneshotState { value: None, waker: None }));
    (OneshotTx(shared.clone()), OneshotRx(shared))
}

struct OneshotState<T> {
    value: Option<T>,
    waker: Option<std::task::Waker>,
}

struct OneshotTx<T>(std::sync::Arc<std::sync::Mutex<OneshotState<T>>>);
struct OneshotRx<T>(std::sync::Arc<std::sync::Mutex<OneshotState<T>>>);

impl<T> OneshotTx<T> {
    fn send(self, v: T) {
        let mut s = self.0.lock().expect("oneshot lock");
        s.value = Some(v);
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }
}

impl<T> std::future::Future for OneshotRx<T> {
    type Output = T;
    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<T> {
        let mut s = self.0.lock().expect("oneshot lock");
        match s.value.take() {
            Some(v) => std::task::Poll::Ready(v),
            None => {
                s.waker = Some(cx.waker().clone());
                std::task::Poll::Pending
            }
        }
    }
}
