"""The official names of AV2T-SAM's SAM parts, for tests that build official-format checkpoints: written from the
official modules (sam2's Hiera/FpnNeck/PromptEncoder/MaskDecoder, segment_anything's ImageEncoderViT), independently
of the converter's name table."""

import re


def official_sam2_name(key: str) -> str:
    rules = [
        (r"^vision_encoder\.backbone\.patch_embed\.projection\.", "image_encoder.trunk.patch_embed.proj."),
        (r"^vision_encoder\.backbone\.(pos_embed\w*)$", r"image_encoder.trunk.\1"),
        (r"^vision_encoder\.backbone\.blocks\.(\d+)\.layer_norm(\d)\.", r"image_encoder.trunk.blocks.\1.norm\2."),
        (r"^vision_encoder\.backbone\.blocks\.(\d+)\.mlp\.proj_in\.", r"image_encoder.trunk.blocks.\1.mlp.layers.0."),
        (r"^vision_encoder\.backbone\.blocks\.(\d+)\.mlp\.proj_out\.", r"image_encoder.trunk.blocks.\1.mlp.layers.1."),
        (r"^vision_encoder\.backbone\.", "image_encoder.trunk."),
        (r"^vision_encoder\.neck\.convs\.(\d+)\.", r"image_encoder.neck.convs.\1.conv."),
        (r"^no_memory_embedding$", "no_mem_embed"),
        (r"^prompt_encoder\.mask_embed\.conv1\.", "sam_prompt_encoder.mask_downscaling.0."),
        (r"^prompt_encoder\.mask_embed\.layer_norm1\.", "sam_prompt_encoder.mask_downscaling.1."),
        (r"^prompt_encoder\.mask_embed\.conv2\.", "sam_prompt_encoder.mask_downscaling.3."),
        (r"^prompt_encoder\.mask_embed\.layer_norm2\.", "sam_prompt_encoder.mask_downscaling.4."),
        (r"^prompt_encoder\.mask_embed\.conv3\.", "sam_prompt_encoder.mask_downscaling.6."),
        (r"^prompt_encoder\.", "sam_prompt_encoder."),
        (r"^mask_decoder\.transformer\.(layers\.\d+)\.layer_norm(\d)\.", r"sam_mask_decoder.transformer.\1.norm\2."),
        (r"^mask_decoder\.transformer\.(layers\.\d+)\.mlp\.proj_in\.", r"sam_mask_decoder.transformer.\1.mlp.layers.0."),
        (r"^mask_decoder\.transformer\.(layers\.\d+)\.mlp\.proj_out\.", r"sam_mask_decoder.transformer.\1.mlp.layers.1."),
        (r"^mask_decoder\.transformer\.layer_norm_final_attn\.", "sam_mask_decoder.transformer.norm_final_attn."),
        (r"^mask_decoder\.(.*)\.o_proj\.", r"sam_mask_decoder.\1.out_proj."),
        (r"^mask_decoder\.upscale_conv1\.", "sam_mask_decoder.output_upscaling.0."),
        (r"^mask_decoder\.upscale_layer_norm\.", "sam_mask_decoder.output_upscaling.1."),
        (r"^mask_decoder\.upscale_conv2\.", "sam_mask_decoder.output_upscaling.3."),
        (r"^mask_decoder\.(output_hypernetworks_mlps\.\d+|iou_prediction_head|pred_obj_score_head)\.proj_in\.", r"sam_mask_decoder.\1.layers.0."),
        (r"^mask_decoder\.(output_hypernetworks_mlps\.\d+|iou_prediction_head|pred_obj_score_head)\.layers\.0\.", r"sam_mask_decoder.\1.layers.1."),
        (r"^mask_decoder\.(output_hypernetworks_mlps\.\d+|iou_prediction_head|pred_obj_score_head)\.proj_out\.", r"sam_mask_decoder.\1.layers.2."),
        (r"^mask_decoder\.", "sam_mask_decoder."),
    ]
    for pattern, target in rules:
        if re.match(pattern, key):
            return re.sub(pattern, target, key, count=1)
    raise AssertionError(key)


def official_sam_name(key: str) -> str:
    """segment_anything's names (EVF-SAM's SAM ViT-H) for a transformers ``SamModel`` key."""
    rules = [
        (r"^vision_encoder\.patch_embed\.projection\.", "image_encoder.patch_embed.proj."),
        (r"^vision_encoder\.pos_embed$", "image_encoder.pos_embed"),
        (r"^vision_encoder\.layers\.(\d+)\.layer_norm(\d)\.", r"image_encoder.blocks.\1.norm\2."),
        (r"^vision_encoder\.layers\.(\d+)\.", r"image_encoder.blocks.\1."),
        (r"^vision_encoder\.neck\.conv1\.", "image_encoder.neck.0."),
        (r"^vision_encoder\.neck\.layer_norm1\.", "image_encoder.neck.1."),
        (r"^vision_encoder\.neck\.conv2\.", "image_encoder.neck.2."),
        (r"^vision_encoder\.neck\.layer_norm2\.", "image_encoder.neck.3."),
        (r"^prompt_encoder\.point_embed\.(\d)\.", r"prompt_encoder.point_embeddings.\1."),
        (r"^prompt_encoder\.mask_embed\.conv1\.", "prompt_encoder.mask_downscaling.0."),
        (r"^prompt_encoder\.mask_embed\.layer_norm1\.", "prompt_encoder.mask_downscaling.1."),
        (r"^prompt_encoder\.mask_embed\.conv2\.", "prompt_encoder.mask_downscaling.3."),
        (r"^prompt_encoder\.mask_embed\.layer_norm2\.", "prompt_encoder.mask_downscaling.4."),
        (r"^prompt_encoder\.mask_embed\.conv3\.", "prompt_encoder.mask_downscaling.6."),
        (r"^mask_decoder\.transformer\.(layers\.\d+)\.layer_norm(\d)\.", r"mask_decoder.transformer.\1.norm\2."),
        (r"^mask_decoder\.transformer\.layer_norm_final_attn\.", "mask_decoder.transformer.norm_final_attn."),
        (r"^mask_decoder\.upscale_conv1\.", "mask_decoder.output_upscaling.0."),
        (r"^mask_decoder\.upscale_layer_norm\.", "mask_decoder.output_upscaling.1."),
        (r"^mask_decoder\.upscale_conv2\.", "mask_decoder.output_upscaling.3."),
        (r"^mask_decoder\.(output_hypernetworks_mlps\.\d+|iou_prediction_head)\.proj_in\.", r"mask_decoder.\1.layers.0."),
        (r"^mask_decoder\.(output_hypernetworks_mlps\.\d+|iou_prediction_head)\.layers\.0\.", r"mask_decoder.\1.layers.1."),
        (r"^mask_decoder\.(output_hypernetworks_mlps\.\d+|iou_prediction_head)\.proj_out\.", r"mask_decoder.\1.layers.2."),
        (r"^(prompt_encoder|mask_decoder)\.", r"\1."),
    ]
    for pattern, target in rules:
        if re.match(pattern, key):
            return re.sub(pattern, target, key, count=1)
    raise AssertionError(key)


def official_sam2_video_name(key: str) -> str:
    """The official ``sam2`` name (``SAM2Base``'s memory attention, memory encoder, object pointer and mask
    downsampling parts) of a transformers ``Sam2VideoModel`` key that ``Sam2Model`` does not have."""
    downsampler = re.match(r"^memory_encoder\.mask_downsampler\.layers\.(\d+)\.(conv|layer_norm)\.(.*)$", key)
    if downsampler:  # the official MaskDownSampler is one Sequential: conv, LayerNorm2d, GELU per stage
        stage, part, rest = downsampler.groups()
        return f"memory_encoder.mask_downsampler.encoder.{3 * int(stage) + (part == 'layer_norm')}.{rest}"
    rules = [
        (r"^memory_attention\.layers\.(\d+)\.(self_attn|cross_attn_image)\.o_proj\.", r"memory_attention.layers.\1.\2.out_proj."),
        (r"^memory_attention\.layers\.(\d+)\.layer_norm(\d)\.", r"memory_attention.layers.\1.norm\2."),
        (r"^memory_attention\.layer_norm\.", "memory_attention.norm."),
        (r"^memory_attention\.", "memory_attention."),
        (r"^memory_encoder\.mask_downsampler\.final_conv\.", "memory_encoder.mask_downsampler.encoder.12."),
        (r"^memory_encoder\.feature_projection\.", "memory_encoder.pix_feat_proj."),
        (r"^memory_encoder\.projection\.", "memory_encoder.out_proj."),
        (r"^memory_encoder\.memory_fuser\.layers\.(\d+)\.depthwise_conv\.", r"memory_encoder.fuser.layers.\1.dwconv."),
        (r"^memory_encoder\.memory_fuser\.layers\.(\d+)\.layer_norm\.", r"memory_encoder.fuser.layers.\1.norm."),
        (r"^memory_encoder\.memory_fuser\.layers\.(\d+)\.pointwise_conv(\d)\.", r"memory_encoder.fuser.layers.\1.pwconv\2."),
        (r"^memory_encoder\.memory_fuser\.layers\.(\d+)\.scale$", r"memory_encoder.fuser.layers.\1.gamma"),
        (r"^object_pointer_proj\.proj_in\.", "obj_ptr_proj.layers.0."),
        (r"^object_pointer_proj\.layers\.0\.", "obj_ptr_proj.layers.1."),
        (r"^object_pointer_proj\.proj_out\.", "obj_ptr_proj.layers.2."),
        (r"^temporal_positional_encoding_projection_layer\.", "obj_ptr_tpos_proj."),
        (r"^mask_downsample\.", "mask_downsample."),
        (r"^memory_temporal_positional_encoding$", "maskmem_tpos_enc"),
        (r"^no_memory_positional_encoding$", "no_mem_pos_enc"),
        (r"^no_object_pointer$", "no_obj_ptr"),
        (r"^occlusion_spatial_embedding_parameter$", "no_obj_embed_spatial"),
    ]
    for pattern, target in rules:
        if re.match(pattern, key):
            return re.sub(pattern, target, key, count=1)
    raise AssertionError(key)
